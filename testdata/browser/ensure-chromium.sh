#!/usr/bin/env bash
# ensure-chromium.sh: make sure Debian's chromium is at /usr/bin/chromium, the
# browser module/internal/browser's end-to-end test drives. Idempotent: when
# it is there, this prints nothing and exits at once. Otherwise it runs
# apt-get update once and installs the `chromium` package, apt's output
# going to a log file (its tail is shown if it fails).
#
# Needs root (or sudo) and Debian's package archive; nothing else is fetched.
set -euo pipefail

readonly CHROMIUM=/usr/bin/chromium
readonly APT_LOG=${RD_APT_LOG:-/var/log/rd-browser-apt.log}

log() { printf 'ensure-chromium: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

[[ -x $CHROMIUM ]] && exit 0

command -v apt-get >/dev/null 2>&1 || die "$CHROMIUM is missing and there is no apt-get: install Chromium by hand"
sudo=()
if ((EUID != 0)); then
	command -v sudo >/dev/null 2>&1 || die "$CHROMIUM is missing; installing it needs root (or sudo)"
	sudo=(sudo -n)
fi
"${sudo[@]}" touch "$APT_LOG" 2>/dev/null || die "cannot write $APT_LOG"

apt() {
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" >>"$APT_LOG" 2>&1 || {
		tail -n 20 "$APT_LOG" >&2
		die "apt-get $1 failed (log: $APT_LOG)"
	}
}

t0=$(date +%s)
log "$CHROMIUM is missing: installing Debian's chromium (log: $APT_LOG)"
apt update
apt install -y --no-install-recommends chromium
[[ -x $CHROMIUM ]] || die "the chromium package installed no $CHROMIUM"
log "installed $("$CHROMIUM" --version 2>/dev/null || echo chromium) in $(($(date +%s) - t0)) s"
