#!/usr/bin/env bash
# run.sh: the `make run` demo. Makes sure a Docker engine runs here (it
# installs and starts one like the test bed does), that the reference desktop
# image exists under the seed's default name, then runs Caddy with
# caddyfile/demo.Caddyfile: the local engine is the only workspace host (no
# hosts.yml: the seed's localhost fallback) and logins come from basic_auth.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

readonly IMAGE=ctfd-remote-desktop:latest
readonly PORT=${RD_PORT:-8080}

bash testdata/testbed/testbed.sh docker
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
	echo "demo: building the reference desktop image as $IMAGE (about a minute the first time)"
	bash testdata/testbed/testbed.sh images
	docker tag rd-desktop:latest "$IMAGE"
fi
[ -x ./caddy ] || make build

mkdir -p .demo
cat <<MSG

  Remote desktops for CTF players: demo
  -------------------------------------
  Player page:      http://localhost:$PORT/remote-desktop
  Admin dashboard:  http://localhost:$PORT/remote-desktop/admin

  Logins (basic auth):  player / player    player2 / player2    admin / admin

  Sessions run on this machine's Docker engine and are destroyed when you
  stop the demo (Ctrl-C).

MSG
export RD_PORT="$PORT"
export XDG_DATA_HOME="$PWD/.demo/data" XDG_CONFIG_HOME="$PWD/.demo/config"
exec ./caddy run --config caddyfile/demo.Caddyfile --adapter caddyfile
