#!/usr/bin/env bash
# ensure-deb.sh NAME FILE PACKAGE [--no-services]: make sure FILE exists,
# installing Debian's PACKAGE for it if not (the tools `make test` needs
# beside the test bed: Chromium for the browser test, promtool for the
# metrics tests). Idempotent: when FILE is there, it prints nothing and exits
# at once. Otherwise it runs apt-get update once and installs the package,
# apt's output going to /var/log/rd-NAME-apt.log (its tail is shown if it
# fails). --no-services keeps the package's install scripts from starting
# a daemon (policy-rc.d answers "action forbidden" while it installs).
#
# Needs root (or sudo) and Debian's package archive; nothing else is fetched.
set -euo pipefail

(($# >= 3)) || {
	echo "usage: ensure-deb.sh NAME FILE PACKAGE [--no-services]" >&2
	exit 2
}
readonly NAME=$1 FILE=$2 PACKAGE=$3 NO_SERVICES=${4:-}
readonly APT_LOG=${RD_APT_LOG:-/var/log/rd-$NAME-apt.log}

log() { printf 'ensure-%s: %s\n' "$NAME" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

[[ -x $FILE ]] && exit 0

command -v apt-get >/dev/null 2>&1 || die "$FILE is missing and there is no apt-get: install $PACKAGE by hand"
sudo=()
if ((EUID != 0)); then
	command -v sudo >/dev/null 2>&1 || die "$FILE is missing; installing it needs root (or sudo)"
	sudo=(sudo -n)
fi
"${sudo[@]}" touch "$APT_LOG" 2>/dev/null || die "cannot write $APT_LOG"

apt() {
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" >>"$APT_LOG" 2>&1 || {
		tail -n 20 "$APT_LOG" >&2
		die "apt-get $1 failed (log: $APT_LOG)"
	}
}

policy=/usr/sbin/policy-rc.d
made_policy=0
cleanup() { if ((made_policy)); then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT
if [[ $NO_SERVICES == --no-services && ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	made_policy=1
fi

t0=$(date +%s)
log "$FILE is missing: installing Debian's $PACKAGE (log: $APT_LOG)"
apt update
apt install -y --no-install-recommends "$PACKAGE"
[[ -x $FILE ]] || die "the $PACKAGE package installed no $FILE"
log "installed $("$FILE" --version 2>&1 | head -n 1) in $(($(date +%s) - t0)) s"
