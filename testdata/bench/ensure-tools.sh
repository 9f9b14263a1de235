#!/usr/bin/env bash
# Installs what `make bench` needs besides Go, Docker and the test bed: wrk
# (HTTP load generator) and nginx (the seed's auth_request architecture, run
# by the benchmark with its own config in a temp dir; the system service is
# neither configured nor started here). Quiet; idempotent.
set -euo pipefail

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
[ ${#missing[@]} -eq 0 ] && exit 0

log=$(mktemp -t bench-apt.XXXXXX.log)
echo "bench: installing ${missing[*]} (log: $log)"
export DEBIAN_FRONTEND=noninteractive
# The package's postinst would start the system nginx on :80; the benchmark
# runs its own instance, so keep services from starting during the install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod +x "$policy"
	created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq >>"$log" 2>&1 || { echo "bench: apt-get update failed, see $log" >&2; exit 1; }
apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1 || { echo "bench: apt-get install failed, see $log" >&2; exit 1; }
nginx -V 2>&1 | grep -q -- '--with-http_auth_request_module' || { echo "bench: this nginx lacks auth_request" >&2; exit 1; }
