#!/usr/bin/env bash
# ensure-promtool.sh: make sure Prometheus's promtool is installed (Debian's
# `prometheus` package ships it as /usr/bin/promtool). The monitoring tests
# check a real /metrics scrape with `promtool check metrics` and the alert
# rules with `promtool check rules`. Idempotent: when promtool is there, this
# prints nothing and exits at once. Otherwise it runs apt-get update once and
# installs the package without starting its server (policy-rc.d refuses
# service starts while it installs), apt's output going to a log file.
#
# Needs root (or sudo) and Debian's package archive; nothing else is fetched.
set -euo pipefail

readonly PROMTOOL=/usr/bin/promtool
readonly APT_LOG=${RD_APT_LOG:-/var/log/rd-promtool-apt.log}

log() { printf 'ensure-promtool: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

[[ -x $PROMTOOL ]] && exit 0

command -v apt-get >/dev/null 2>&1 || die "$PROMTOOL is missing and there is no apt-get: install Prometheus's promtool by hand"
sudo=()
if ((EUID != 0)); then
	command -v sudo >/dev/null 2>&1 || die "$PROMTOOL is missing; installing it needs root (or sudo)"
	sudo=(sudo -n)
fi
"${sudo[@]}" touch "$APT_LOG" 2>/dev/null || die "cannot write $APT_LOG"

apt() {
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" >>"$APT_LOG" 2>&1 || {
		tail -n 20 "$APT_LOG" >&2
		die "apt-get $1 failed (log: $APT_LOG)"
	}
}

# Only promtool is wanted: keep the package's Prometheus server from being
# started by its install scripts (exit 101: "action forbidden").
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	made_policy=1
fi
cleanup() { if ((made_policy)); then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

t0=$(date +%s)
log "$PROMTOOL is missing: installing Debian's prometheus package for it (log: $APT_LOG)"
apt update
apt install -y --no-install-recommends prometheus
[[ -x $PROMTOOL ]] || die "the prometheus package installed no $PROMTOOL"
log "installed $("$PROMTOOL" --version 2>&1 | head -n 1) in $(($(date +%s) - t0)) s"
