#!/usr/bin/env bash
# testbed.sh: a local cluster of "Docker hosts" reachable over SSH, for the
# remote-desktop module's integration tests.
#
# Usage: testbed.sh up [N] | down [--images] | status | docker | images
#                   | host29-try up|down
#
#   up [N]    make sure N hosts (default $TESTBED_HOSTS, else 3) run, each a
#             container rdtb-host-I (rd-dockerhost image: sshd + dockerd) on the
#             docker network rdtb-net (172.30.77.0/24) at 172.30.77.(10+I),
#             with rd-desktop:latest, rd-tiny:latest and rd-evil:latest (a
#             malicious desktop, for security tests) loaded into its dockerd.
#             Host 3 (the hosts in $TESTBED_ENGINE29_HOSTS; empty: none) runs
#             Docker Engine 29 refusing API < 1.44 (rd-dockerhost29), the
#             others Debian's 20.10. Engine 29 is built once from the Go module
#             proxy (about 10 min on 2 cores) and cached in
#             /var/cache/rd-testbed/engine-VERSION ($TESTBED_ENGINE_CACHE).
#             Writes testdata/testbed/state/: id_ed25519(.pub) (the client
#             key), known_hosts, hosts.yml, testbed.json. Idempotent; a second
#             `up` only checks (and revives dead sshd/dockerd in the hosts).
#   down      remove the hosts, their volumes, the network and the state dir.
#             --images also removes the rd-* images.
#   host29-try up|down
#             one extra Engine-29 host outside the regular set, rdtb-host-9 at
#             172.30.77.19, from this checkout's images (tag :try), with the
#             state's client key and its own state dir (state-try/: known_hosts,
#             hosts.yml, testbed.json; point RD_TESTBED at it). Leaves the
#             regular hosts, their images and state alone.
#   status    print what is up; exit 0 only if all hosts are healthy.
#   docker    make sure a Docker engine is installed and running.
#   images    make sure the images are built (docker build, cached).
#
# Needs root, Debian (apt-get), and Go for the tiny server (/usr/local/go/bin/go
# or `go` in PATH). Only talks to loopback and to the network it creates.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd)
readonly SCRIPT_DIR REPO_ROOT
STATE_DIR="$SCRIPT_DIR/state"
readonly TRY_STATE_DIR="$SCRIPT_DIR/state-try"
readonly IMAGES_DIR="$REPO_ROOT/testdata/images"

readonly NETWORK=rdtb-net
readonly SUBNET=172.30.77.0/24
readonly IP_PREFIX=172.30.77.
readonly IP_OFFSET=10
readonly HOST_PREFIX=rdtb-host-
readonly MAX_HOSTS=50
readonly LABEL=rdtb.testbed
readonly BASE_IMAGE=debian:bookworm-slim
readonly DESKTOP_IMAGE=rd-desktop:latest
readonly TINY_IMAGE=rd-tiny:latest
readonly EVIL_IMAGE=rd-evil:latest
DOCKERHOST_IMAGE=rd-dockerhost:latest
DOCKERHOST29_IMAGE=rd-dockerhost29:latest
readonly LOADED_IMAGES=("$DESKTOP_IMAGE" "$TINY_IMAGE" "$EVIL_IMAGE")
readonly HOST_KEY_TYPES=(ed25519 ecdsa rsa)

# Docker Engine 29 for the hosts in ENGINE29_HOSTS: dockerd and docker-proxy
# from the Go module proxy (moby/moby/v2 beta.24 is Engine 29.8.1). The build
# flags stay fixed: any change rebuilds everything (about 10 min).
readonly ENGINE29_VERSION=29.8.1
readonly ENGINE29_MODULE=github.com/moby/moby/v2
readonly ENGINE29_MODULE_VERSION=v2.0.0-beta.24
readonly ENGINE29_DIR=${TESTBED_ENGINE_CACHE:-/var/cache/rd-testbed}/engine-$ENGINE29_VERSION
readonly ENGINE20_VERSION=20.10 # Debian bookworm's docker.io
ENGINE29_HOSTS=${TESTBED_ENGINE29_HOSTS-3}
# The try host (host29-try) carries its own label, so that up, status and
# remove_extra_hosts of the regular set never see it.
HOST_LABEL=$LABEL
FIRST_HOST=1
readonly DOCKERD_LOG=/var/log/rd-dockerd.log
readonly DEBIAN_MIRROR=${TESTBED_DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly DEBIAN_SECURITY_MIRROR=${TESTBED_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# Flags that let a container run its own dockerd without --privileged (the
# machine's capability bounding set lacks CAP_SYS_RESOURCE).
readonly HOST_RUN_FLAGS=(
	--cap-add ALL --cap-drop SYS_RESOURCE
	--security-opt seccomp=unconfined
	--security-opt apparmor=unconfined
	--security-opt systempaths=unconfined
	-v /sys/fs/cgroup:/sys/fs/cgroup:rw --cgroupns host
	--tmpfs /run --tmpfs /tmp
)

START_TIME=$(date +%s.%N)

log() { printf 'testbed: %s\n' "$*" >&2; }
die() {
	printf 'testbed: ERROR: %s\n' "$*" >&2
	exit 1
}
elapsed() { awk -v s="$START_TIME" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

host_name() { printf '%s%d' "$HOST_PREFIX" "$1"; }
host_ip() { printf '%s%d' "$IP_PREFIX" $(($1 + IP_OFFSET)); }
is_engine29() { [[ " $ENGINE29_HOSTS " == *" $1 "* ]]; }
host_engine() { if is_engine29 "$1"; then echo "$ENGINE29_VERSION"; else echo "$ENGINE20_VERSION"; fi; }
host_image() { if is_engine29 "$1"; then echo "$DOCKERHOST29_IMAGE"; else echo "$DOCKERHOST_IMAGE"; fi; }
# Each engine keeps its own /var/lib/docker: 20.10 cannot read what 29 wrote.
host_volume() { if is_engine29 "$1"; then echo "$(host_name "$1")-data29"; else echo "$(host_name "$1")-data"; fi; }

# ---------------------------------------------------------------------------
# Packages and the Docker engine

APT_UPDATED=0
readonly APT_LOG=/var/log/rd-testbed-apt.log
# ensure_pkgs CMD:PKG...: install (with one apt-get update) the packages whose
# command is missing. apt's output goes to $APT_LOG.
ensure_pkgs() {
	local pair pkg missing=()
	for pair in "$@"; do
		command -v "${pair%%:*}" >/dev/null 2>&1 && continue
		pkg=${pair#*:}
		[[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	[[ $(id -u) -eq 0 ]] || die "need root to install: ${missing[*]}"
	command -v apt-get >/dev/null 2>&1 || die "no apt-get; install by hand: ${missing[*]}"
	if ((APT_UPDATED == 0)); then
		log "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update >>"$APT_LOG" 2>&1 || {
			tail -n 20 "$APT_LOG" >&2
			die "apt-get update failed (log: $APT_LOG)"
		}
		APT_UPDATED=1
	fi
	log "installing: ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >>"$APT_LOG" 2>&1 || {
		tail -n 20 "$APT_LOG" >&2
		die "apt-get install failed (log: $APT_LOG)"
	}
}

docker_answers() { docker info >/dev/null 2>&1; }

cmd_docker() {
	# Some machines have a docker CLI but no engine: test for dockerd.
	ensure_pkgs dockerd:docker.io docker:docker.io
	docker_answers && return 0
	local pid=""
	if [[ -s /var/run/docker.pid ]]; then
		pid=$(cat /var/run/docker.pid)
		[[ -d /proc/$pid && $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]] || pid=""
	fi
	if [[ -z $pid ]]; then
		log "starting dockerd (log: $DOCKERD_LOG)"
		# 9>&-: the daemon must not keep the lock of this script.
		nohup setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
	else
		log "dockerd (pid $pid) runs but does not answer yet; waiting"
	fi
	local i
	for ((i = 0; i < 600; i++)); do
		docker_answers && {
			log "docker engine is up"
			return 0
		}
		sleep 0.1
	done
	tail -n 30 "$DOCKERD_LOG" >&2 || true
	die "dockerd did not answer within 60 s (log: $DOCKERD_LOG)"
}

# ---------------------------------------------------------------------------
# Images

# make_base_image: debian:bookworm-slim from debootstrap, when there is no
# registry to pull it from. Configured like Debian's official slim image
# (no docs, man pages or locales; apt caches cleaned).
make_base_image() {
	docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
	ensure_pkgs debootstrap:debootstrap
	local root t0
	t0=$(date +%s)
	root=$(mktemp -d /var/tmp/rdtb-rootfs.XXXXXX)
	log "building $BASE_IMAGE with debootstrap in $root (about 30 s)"
	if ! debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1; then
		tail -n 30 "$root.log" >&2
		cleanup_rootfs "$root"
		die "debootstrap failed"
	fi
	# debootstrap may leave proc/sys/dev mounted in the target (it bind-mounts
	# /dev when run inside a container): unmount before deleting anything.
	unmount_under "$root"
	cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<-'EOF'
		# As in Debian's "slim" images: files containers rarely need.
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/groff/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/linda/*
		path-exclude /usr/share/lintian/*
		path-exclude /usr/share/locale/*
		path-exclude /usr/share/man/*
	EOF
	cat >"$root/etc/apt/apt.conf.d/docker-clean" <<-'EOF'
		DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		Dir::Cache::pkgcache "";
		Dir::Cache::srcpkgcache "";
	EOF
	printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/docker-no-languages"
	printf 'Acquire::GzipIndexes "true";\n' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
	printf 'APT::AutoRemove::SuggestsImportant "false";\n' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
	rm -f "$root/etc/apt/sources.list"
	cat >"$root/etc/apt/sources.list.d/debian.sources" <<-EOF
		Types: deb
		URIs: $DEBIAN_MIRROR
		Suites: bookworm bookworm-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: $DEBIAN_SECURITY_MIRROR
		Suites: bookworm-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
	rm -rf --one-file-system "$root"/usr/share/{man,info,groff,lintian,linda,locale}/* \
		"$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
		"$root"/var/lib/apt/lists/* "${root:?}"/var/log/* "${root:?}"/dev/* \
		"${root:?}"/tmp/* "$root/debootstrap"
	tar --numeric-owner -C "$root" -c . |
		docker import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
	cleanup_rootfs "$root"
	log "built $BASE_IMAGE in $(($(date +%s) - t0)) s"
}

# unmount_under DIR: unmount everything mounted below DIR, deepest first.
unmount_under() {
	local dir=$1 m
	while read -r m; do
		umount -l "$m" || die "cannot unmount $m"
	done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
}

cleanup_rootfs() {
	local root=$1
	unmount_under "$root"
	rm -rf --one-file-system "$root" "$root.log"
}

go_binary() {
	if command -v go >/dev/null 2>&1; then
		command -v go
	elif [[ -x /usr/local/go/bin/go ]]; then
		echo /usr/local/go/bin/go
	else
		ensure_pkgs go:golang-go
		command -v go
	fi
}

# build_tiny_binary: the rd-tiny server, static (no cgo). No -trimpath: that
# would recompile the whole standard library instead of reusing the cache
# that the project's own builds leave.
build_tiny_binary() {
	local go
	go=$(go_binary)
	(
		cd "$IMAGES_DIR/tiny"
		CGO_ENABLED=0 GOWORK=off GOFLAGS='' GOTOOLCHAIN=local \
			"$go" build -buildvcs=false -ldflags='-s -w' -o tinyserver .
	) || die "could not build the tiny server"
}

# build_evil_binary: the rd-evil server, built like the tiny one.
build_evil_binary() {
	local go
	go=$(go_binary)
	(
		cd "$IMAGES_DIR/evil"
		CGO_ENABLED=0 GOWORK=off GOFLAGS='' GOTOOLCHAIN=local \
			"$go" build -buildvcs=false -ldflags='-s -w' -o evilserver .
	) || die "could not build the evil server"
}

# build_image TAG DIR [DOCKER BUILD ARGS...]
build_image() {
	local tag=$1 dir=$2 t0 logf
	shift 2
	t0=$(date +%s)
	logf=$(mktemp "${TMPDIR:-/tmp}/rdtb-build.XXXXXX")
	# The classic builder: the docker CLI here may lack buildx, and it caches
	# layers just as well for these simple Dockerfiles.
	if ! DOCKER_BUILDKIT=0 docker build --force-rm --label "$LABEL.image=1" "$@" -t "$tag" "$dir" >"$logf" 2>&1; then
		tail -n 40 "$logf" >&2
		rm -f "$logf"
		die "docker build of $tag failed"
	fi
	rm -f "$logf"
	log "image $tag ready ($(($(date +%s) - t0)) s, $(image_size "$tag"))"
}

image_size() {
	docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'
}

# ensure_engine29: dockerd and docker-proxy of Engine 29 in $ENGINE29_DIR,
# built unless the cached dockerd already reports the pinned version.
ensure_engine29() {
	local go t0
	if [[ -x $ENGINE29_DIR/docker-proxy ]] &&
		[[ $("$ENGINE29_DIR/dockerd" --version 2>/dev/null) == "Docker version $ENGINE29_VERSION,"* ]]; then
		return 0
	fi
	go=$(go_binary)
	mkdir -p "$ENGINE29_DIR"
	t0=$(date +%s)
	log "building Docker Engine $ENGINE29_VERSION ($ENGINE29_MODULE@$ENGINE29_MODULE_VERSION) into $ENGINE29_DIR (about 10 min on 2 cores; once)"
	# No cgo, fixed tags and flags: the result does not depend on this
	# machine's libraries, and a rerun reuses Go's build cache.
	(cd / && GOBIN=$ENGINE29_DIR CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off GOTOOLCHAIN=local \
		"$go" install -tags 'netgo osusergo' -trimpath \
		-ldflags "-s -w -X $ENGINE29_MODULE/dockerversion.Version=$ENGINE29_VERSION" \
		"$ENGINE29_MODULE/cmd/dockerd@$ENGINE29_MODULE_VERSION" \
		"$ENGINE29_MODULE/cmd/docker-proxy@$ENGINE29_MODULE_VERSION") ||
		die "could not build Docker Engine $ENGINE29_VERSION"
	log "built Docker Engine $ENGINE29_VERSION in $(($(date +%s) - t0)) s"
}

# build_dockerhost29: rd-dockerhost29 from $DOCKERHOST_IMAGE and the Engine 29
# binaries (copied into a build context of their own).
build_dockerhost29() {
	local ctx
	ensure_engine29
	ctx=$(mktemp -d "${TMPDIR:-/tmp}/rdtb-dockerhost29.XXXXXX")
	cp -p "$IMAGES_DIR/dockerhost29"/* "$ENGINE29_DIR/dockerd" "$ENGINE29_DIR/docker-proxy" "$ctx/"
	build_image "$DOCKERHOST29_IMAGE" "$ctx" --build-arg "BASE=$DOCKERHOST_IMAGE" || {
		rm -rf "$ctx"
		return 1
	}
	rm -rf "$ctx"
}

cmd_images() {
	cmd_docker
	make_base_image
	build_tiny_binary
	build_image "$TINY_IMAGE" "$IMAGES_DIR/tiny"
	build_image "$DESKTOP_IMAGE" "$IMAGES_DIR/desktop"
	build_evil_binary # its image takes noVNC from rd-desktop
	build_image "$EVIL_IMAGE" "$IMAGES_DIR/evil"
	build_image "$DOCKERHOST_IMAGE" "$IMAGES_DIR/dockerhost"
	[[ -z $ENGINE29_HOSTS ]] || build_dockerhost29
	# Builds leave the previous image untagged; drop those.
	docker image prune -f --filter "label=$LABEL.image=1" >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------
# Keys and state files

ensure_keys() {
	local n=$1 i t dir
	mkdir -p "$STATE_DIR"
	chmod 0700 "$STATE_DIR"
	if [[ ! -s $STATE_DIR/id_ed25519 ]]; then
		log "generating the client key"
		rm -f "$STATE_DIR/id_ed25519" "$STATE_DIR/id_ed25519.pub"
		ssh-keygen -q -t ed25519 -N '' -C rdtb-client -f "$STATE_DIR/id_ed25519"
	fi
	for ((i = FIRST_HOST; i <= n; i++)); do
		dir="$STATE_DIR/hostkeys/$(host_name "$i")"
		mkdir -p "$dir"
		for t in "${HOST_KEY_TYPES[@]}"; do
			[[ -s $dir/ssh_host_${t}_key && -s $dir/ssh_host_${t}_key.pub ]] && continue
			rm -f "$dir/ssh_host_${t}_key" "$dir/ssh_host_${t}_key.pub"
			ssh-keygen -q -t "$t" -N '' -C "root@$(host_name "$i")" -f "$dir/ssh_host_${t}_key"
		done
	done
}

# host_config_hash I: what a host container is made from. A container whose
# label differs is recreated.
host_config_hash() {
	local i=$1 dir
	dir="$STATE_DIR/hostkeys/$(host_name "$i")"
	{
		docker image inspect -f '{{.Id}}' "$(host_image "$i")"
		host_ip "$i"
		host_volume "$i"
		cat "$STATE_DIR/id_ed25519.pub" "$dir"/ssh_host_*_key.pub
		printf '%s\n' "${HOST_RUN_FLAGS[@]}"
	} | sha256sum | cut -c1-16
}

write_state_files() {
	local n=$1 i t ip name tmp
	tmp=$(mktemp "$STATE_DIR/.tmp.XXXXXX")

	# known_hosts: every host key of every host, straight from the keys we made.
	: >"$tmp"
	for ((i = FIRST_HOST; i <= n; i++)); do
		ip=$(host_ip "$i")
		for t in "${HOST_KEY_TYPES[@]}"; do
			printf '%s %s\n' "$ip" "$(cut -d' ' -f1-2 "$STATE_DIR/hostkeys/$(host_name "$i")/ssh_host_${t}_key.pub")" >>"$tmp"
		done
	done
	chmod 0644 "$tmp"
	mv -f "$tmp" "$STATE_DIR/known_hosts"

	tmp=$(mktemp "$STATE_DIR/.tmp.XXXXXX")
	{
		echo "workspace_hosts:"
		for ((i = FIRST_HOST; i <= n; i++)); do
			ip=$(host_ip "$i")
			printf '  - hostname: %s\n    user: root\n    pub_hostname: %s\n    docker_image: %s\n' \
				"$ip" "$ip" "$DESKTOP_IMAGE"
		done
		cat <<-'EOF'
			container_defaults:
			  memory_limit: 1g
			  shm_size: 256m
			  resolution: 1280x800
			  cpu_limit: 1
			session_defaults:
			  initial_duration: 3600
			  extension_duration: 1200
			  max_extensions: 3
		EOF
	} >"$tmp"
	chmod 0644 "$tmp"
	mv -f "$tmp" "$STATE_DIR/hosts.yml"

	tmp=$(mktemp "$STATE_DIR/.tmp.XXXXXX")
	{
		printf '{\n  "hosts": [\n'
		for ((i = FIRST_HOST; i <= n; i++)); do
			name=$(host_name "$i")
			ip=$(host_ip "$i")
			printf '    {"name": "%s", "ip": "%s", "user": "root", "ssh_port": 22, "engine": "%s"}%s\n' \
				"$name" "$ip" "$(host_engine "$i")" "$([[ $i -lt $n ]] && echo ,)"
		done
		printf '  ],\n'
		printf '  "network": "%s",\n' "$NETWORK"
		printf '  "subnet": "%s",\n' "$SUBNET"
		printf '  "ssh_key": "%s",\n' "$STATE_DIR/id_ed25519"
		printf '  "known_hosts": "%s",\n' "$STATE_DIR/known_hosts"
		printf '  "hosts_file": "%s",\n' "$STATE_DIR/hosts.yml"
		printf '  "desktop_image": "%s",\n' "$DESKTOP_IMAGE"
		printf '  "tiny_image": "%s",\n' "$TINY_IMAGE"
		printf '  "evil_image": "%s"\n' "$EVIL_IMAGE"
		printf '}\n'
	} >"$tmp"
	chmod 0644 "$tmp"
	mv -f "$tmp" "$STATE_DIR/testbed.json"
}

# ---------------------------------------------------------------------------
# Network and hosts

ensure_network() {
	local subnet
	if subnet=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$NETWORK" 2>/dev/null); then
		[[ $subnet == "$SUBNET" ]] ||
			die "network $NETWORK exists with subnet '$subnet', not $SUBNET; run: $0 down"
		return 0
	fi
	log "creating network $NETWORK ($SUBNET)"
	docker network create --driver bridge --subnet "$SUBNET" --label "$LABEL=1" "$NETWORK" >/dev/null
}

# create_host I: (re)create and start container rdtb-host-I.
create_host() {
	local i=$1 name ip hash dir t volume
	name=$(host_name "$i")
	ip=$(host_ip "$i")
	hash=$(host_config_hash "$i")
	volume=$(host_volume "$i")
	dir="$STATE_DIR/hostkeys/$name"
	docker rm -f "$name" >/dev/null 2>&1 || true
	docker volume create --label "$HOST_LABEL=1" "$volume" >/dev/null
	docker create --name "$name" --hostname "$name" \
		--network "$NETWORK" --ip "$ip" \
		--label "$HOST_LABEL=1" --label "$LABEL.config=$hash" \
		"${HOST_RUN_FLAGS[@]}" \
		-v "$volume:/var/lib/docker" \
		"$(host_image "$i")" >/dev/null
	# Host keys and root's authorized_keys go in before the first start, so
	# sshd starts with them (docker cp keeps owner root and the modes).
	for t in "${HOST_KEY_TYPES[@]}"; do
		docker cp "$dir/ssh_host_${t}_key" "$name:/etc/ssh/ssh_host_${t}_key"
		docker cp "$dir/ssh_host_${t}_key.pub" "$name:/etc/ssh/ssh_host_${t}_key.pub"
	done
	docker cp "$STATE_DIR/id_ed25519.pub" "$name:/root/.ssh/authorized_keys"
	docker start "$name" >/dev/null
}

# ensure_host I: the container exists with the current configuration and runs.
ensure_host() {
	local i=$1 name hash cur running
	name=$(host_name "$i")
	hash=$(host_config_hash "$i")
	if cur=$(docker inspect -f "{{index .Config.Labels \"$LABEL.config\"}} {{.State.Running}}" "$name" 2>/dev/null); then
		running=${cur#* }
		cur=${cur%% *}
		if [[ $cur == "$hash" ]]; then
			if [[ $running != true ]]; then
				log "$name: starting"
				docker start "$name" >/dev/null
			fi
			return 0
		fi
		log "$name: configuration changed; recreating"
	else
		log "$name: creating at $(host_ip "$i") (Docker Engine $(host_engine "$i"))"
	fi
	create_host "$i"
}

# remove_extra_hosts N: remove test-bed hosts numbered above N.
remove_extra_hosts() {
	local n=$1 name idx
	while read -r name; do
		[[ -n $name ]] || continue
		idx=${name#"$HOST_PREFIX"}
		if [[ ! $idx =~ ^[0-9]+$ ]] || ((idx <= n)); then
			continue
		fi
		log "$name: removing (beyond $n hosts)"
		docker rm -f "$name" >/dev/null
		docker volume rm -f "$name-data" "$name-data29" >/dev/null 2>&1 || true
		rm -rf "${STATE_DIR:?}/hostkeys/$name"
	done < <(docker ps -a --filter "label=$LABEL=1" --format '{{.Names}}')
}

# host_prepare I: revive the daemons (both idempotent, fast when running) and
# print the images the host lacks or has in another version.
host_prepare() {
	local name img want have
	name=$(host_name "$1")
	docker exec "$name" tb-dockerd start >&2 || {
		docker exec "$name" tail -n 20 /var/log/dockerd.log >&2 || true
		die "$name: dockerd does not answer"
	}
	docker exec "$name" tb-sshd start >&2 || die "$name: sshd does not start"
	for img in "${LOADED_IMAGES[@]}"; do
		want=$(docker image inspect -f '{{.Id}}' "$img")
		have=$(docker exec "$name" docker image inspect -f '{{.Id}}' "$img" 2>/dev/null || true)
		[[ $want == "$have" ]] || echo "$img"
	done
}

# load_images N: copy rd-desktop and rd-tiny into every host that lacks them
# or has another version: one `docker save` of what is needed, streamed to
# one `docker load` per host, in parallel.
load_images() {
	local n=$1 i tmpdir pids=() hosts=() failed=0 t0 need=()
	tmpdir=$(mktemp -d /var/tmp/rdtb-load.XXXXXX)
	# Which host needs which image (hosts checked in parallel).
	for ((i = FIRST_HOST; i <= n; i++)); do
		host_prepare "$i" >"$tmpdir/need.$i" 2>"$tmpdir/prep.$i" &
		pids+=("$!")
	done
	for ((i = FIRST_HOST; i <= n; i++)); do
		if ! wait "${pids[i - FIRST_HOST]}"; then
			cat "$tmpdir/prep.$i" >&2
			failed=1
		fi
	done
	if ((failed)); then
		rm -rf "$tmpdir"
		die "could not prepare the hosts"
	fi
	mapfile -t need < <(sort -u "$tmpdir"/need.*)
	if ((${#need[@]} == 0)); then
		rm -rf "$tmpdir"
		return 0
	fi
	# Stream one `docker save` to every host that needs something, through
	# one FIFO per host (no temporary file: the disk is the bottleneck).
	t0=$(date +%s)
	local fifos=()
	pids=()
	for ((i = FIRST_HOST; i <= n; i++)); do
		[[ -s $tmpdir/need.$i ]] || continue
		log "$(host_name "$i"): loading $(paste -sd' ' "$tmpdir/need.$i")"
		mkfifo "$tmpdir/fifo.$i"
		{
			docker exec -i "$(host_name "$i")" docker load -q >/dev/null &&
				docker exec "$(host_name "$i")" docker image prune -f >/dev/null
		} <"$tmpdir/fifo.$i" 2>"$tmpdir/load.$i" &
		pids+=("$!")
		hosts+=("$i")
		fifos+=("$tmpdir/fifo.$i")
	done
	# tee -p: a host whose load fails does not stop the others.
	if ! docker save "${need[@]}" | tee -p "${fifos[@]}" >/dev/null; then
		log "streaming ${need[*]} failed"
		failed=1
	fi
	for i in "${!pids[@]}"; do
		if ! wait "${pids[i]}"; then
			log "$(host_name "${hosts[i]}"): docker load failed:"
			cat "$tmpdir/load.${hosts[i]}" >&2
			failed=1
		fi
	done
	rm -rf "$tmpdir"
	((failed == 0)) || die "loading images failed"
	log "loaded images into ${#hosts[@]} host(s) in $(($(date +%s) - t0)) s"
}

ssh_opts() {
	printf '%s\n' -F /dev/null \
		-o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none \
		-o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null \
		-o "UserKnownHostsFile=$STATE_DIR/known_hosts" \
		-o ConnectTimeout=5 -o LogLevel=ERROR \
		-i "$STATE_DIR/id_ed25519"
}

# verify_hosts N: over SSH with strict host-key checking, every host has the
# same rd-desktop and rd-tiny as this machine, and runs its Docker Engine.
verify_hosts() {
	local n=$1 i pids=() failed=0 opts tmpdir
	mapfile -t opts < <(ssh_opts)
	tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/rdtb-verify.XXXXXX")
	local want
	want="$(docker image inspect -f '{{.Id}}' "$DESKTOP_IMAGE") $(docker image inspect -f '{{.Id}}' "$TINY_IMAGE")"
	for ((i = FIRST_HOST; i <= n; i++)); do
		(
			out=$(ssh "${opts[@]}" "root@$(host_ip "$i")" \
				"docker image inspect -f '{{.Id}}' $DESKTOP_IMAGE $TINY_IMAGE && docker version -f '{{.Server.Version}}'")
			got=$(head -n 2 <<<"$out" | paste -sd' ')
			[[ $got == "$want" ]] || {
				echo "images differ: want '$want', got '$got'"
				exit 1
			}
			engine=$(tail -n 1 <<<"$out")
			[[ $engine == "$(host_engine "$i")"* ]] || {
				echo "Docker Engine $engine, want $(host_engine "$i")"
				exit 1
			}
		) >"$tmpdir/$i" 2>&1 &
		pids+=("$!")
	done
	for ((i = FIRST_HOST; i <= n; i++)); do
		if ! wait "${pids[i - FIRST_HOST]}"; then
			log "$(host_name "$i") ($(host_ip "$i")): SSH check FAILED:"
			sed 's/^/    /' "$tmpdir/$i" >&2
			failed=1
		fi
	done
	rm -rf "$tmpdir"
	((failed == 0)) || die "test bed is not usable"
}

parse_count() {
	local n=${1:-${TESTBED_HOSTS:-3}}
	if [[ ! $n =~ ^[0-9]+$ ]] || ((n < 1 || n > MAX_HOSTS)); then
		die "number of hosts must be 1..$MAX_HOSTS (got '$n')"
	fi
	echo "$n"
}

cmd_up() {
	local n i
	n=$(parse_count "${1:-}")
	ensure_pkgs ssh:openssh-client ssh-keygen:openssh-client
	cmd_images
	ensure_keys "$n"
	ensure_network
	remove_extra_hosts "$n"
	for ((i = 1; i <= n; i++)); do
		ensure_host "$i"
	done
	write_state_files "$n"
	load_images "$n"
	verify_hosts "$n"
	log "up: $n host(s) ready in $(elapsed) s; state in $STATE_DIR"
	for ((i = 1; i <= n; i++)); do
		log "  $(host_name "$i")  root@$(host_ip "$i")  Docker Engine $(host_engine "$i")"
	done
}

cmd_down() {
	local images=0 names
	case "${1:-}" in
	"") ;;
	--images) images=1 ;;
	*) die "usage: $0 down [--images]" ;;
	esac
	if ! docker_answers; then
		log "docker is not running; removing the state dir only"
		rm -rf "${STATE_DIR:?}"
		return 0
	fi
	names=$(docker ps -aq --filter "label=$LABEL=1"; docker ps -aq --filter "label=$LABEL.try=1")
	if [[ -n $names ]]; then
		log "removing host containers"
		# shellcheck disable=SC2086 # word splitting of IDs is intended
		docker rm -f $names >/dev/null
	fi
	names=$(docker volume ls -q --filter "label=$LABEL=1"; docker volume ls -q --filter "label=$LABEL.try=1")
	if [[ -n $names ]]; then
		log "removing volumes"
		# shellcheck disable=SC2086
		docker volume rm -f $names >/dev/null
	fi
	if docker network inspect "$NETWORK" >/dev/null 2>&1; then
		log "removing network $NETWORK"
		docker network rm "$NETWORK" >/dev/null
	fi
	rm -rf "${STATE_DIR:?}" "${TRY_STATE_DIR:?}"
	if ((images)); then
		log "removing images"
		docker image rm -f "$EVIL_IMAGE" "$DESKTOP_IMAGE" "$TINY_IMAGE" "$DOCKERHOST_IMAGE" "$DOCKERHOST29_IMAGE" \
			rd-dockerhost:try rd-dockerhost29:try >/dev/null 2>&1 || true
	fi
	log "down ($(elapsed) s)"
}

cmd_status() {
	local ok=0 name ip st img id opts
	if ! docker_answers; then
		echo "docker: not running"
		return 1
	fi
	echo "docker: running ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
	local images=("$BASE_IMAGE" "$DESKTOP_IMAGE" "$TINY_IMAGE" "$EVIL_IMAGE" "$DOCKERHOST_IMAGE")
	[[ -z $ENGINE29_HOSTS ]] || images+=("$DOCKERHOST29_IMAGE")
	for img in "${images[@]}"; do
		if id=$(docker image inspect -f '{{.Id}}' "$img" 2>/dev/null); then
			printf 'image: %-22s %s %s\n' "$img" "${id:7:12}" "$(image_size "$img")"
		else
			printf 'image: %-22s missing\n' "$img"
			ok=1
		fi
	done
	if docker network inspect "$NETWORK" >/dev/null 2>&1; then
		echo "network: $NETWORK $SUBNET"
	else
		echo "network: $NETWORK missing"
		ok=1
	fi
	if [[ -f $STATE_DIR/testbed.json ]]; then
		echo "state: $STATE_DIR"
	else
		echo "state: none"
		ok=1
	fi
	mapfile -t opts < <(ssh_opts)
	local found=0
	while read -r name st; do
		[[ -n $name ]] || continue
		found=1
		ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" "$name" 2>/dev/null || true)
		local d="-" s="-" c="-"
		if [[ $st == running ]]; then
			d=down s=down
			if docker exec "$name" tb-dockerd status >/dev/null 2>&1; then d=up; else ok=1; fi
			if docker exec "$name" tb-sshd status >/dev/null 2>&1; then s=up; else ok=1; fi
			if [[ -f $STATE_DIR/known_hosts ]]; then
				c=$(ssh "${opts[@]}" "root@$ip" docker ps -q </dev/null 2>/dev/null | wc -l) || c="?"
			fi
		else
			ok=1
		fi
		printf 'host: %-12s %-14s %-8s dockerd=%-5s sshd=%-5s containers=%s\n' "$name" "$ip" "$st" "$d" "$s" "$c"
	done < <(docker ps -a --filter "label=$LABEL=1" --format '{{.Names}} {{.State}}' | sort -V)
	((found)) || {
		echo "hosts: none"
		ok=1
	}
	return "$ok"
}

# host29-try up|down: see the usage at the top.
cmd_host29_try() {
	local i=9
	STATE_DIR=$TRY_STATE_DIR
	FIRST_HOST=$i
	ENGINE29_HOSTS=$i
	# TESTBED_TRY_ENGINE=20.10: the same try host with this checkout's 20.10 image.
	[[ ${TESTBED_TRY_ENGINE:-} != "$ENGINE20_VERSION" ]] || ENGINE29_HOSTS=""
	HOST_LABEL=$LABEL.try
	DOCKERHOST_IMAGE=rd-dockerhost:try
	DOCKERHOST29_IMAGE=rd-dockerhost29:try
	case "${1:-}" in
	up) ;;
	down)
		docker rm -f "$(host_name "$i")" >/dev/null 2>&1 || true
		docker volume rm -f "$(host_name "$i")-data" "$(host_name "$i")-data29" >/dev/null 2>&1 || true
		rm -rf "${STATE_DIR:?}"
		log "host29-try: removed $(host_name "$i") and $STATE_DIR"
		return 0
		;;
	*) die "usage: $0 host29-try up|down" ;;
	esac
	local shared=$SCRIPT_DIR/state
	[[ -s $shared/id_ed25519 ]] || die "no client key in $shared: bring the test bed up first"
	docker network inspect "$NETWORK" >/dev/null 2>&1 || die "no network $NETWORK: bring the test bed up first"
	docker image inspect "$DESKTOP_IMAGE" "$TINY_IMAGE" >/dev/null 2>&1 || die "no $DESKTOP_IMAGE/$TINY_IMAGE: bring the test bed up first"
	build_image "$DOCKERHOST_IMAGE" "$IMAGES_DIR/dockerhost"
	[[ -z $ENGINE29_HOSTS ]] || build_dockerhost29
	mkdir -p "$STATE_DIR"
	chmod 0700 "$STATE_DIR"
	cp -p "$shared/id_ed25519" "$shared/id_ed25519.pub" "$STATE_DIR/"
	ensure_keys "$i"
	ensure_host "$i"
	write_state_files "$i"
	load_images "$i"
	verify_hosts "$i"
	log "host29-try: $(host_name "$i") root@$(host_ip "$i") (Docker Engine $(host_engine "$i")) ready in $(elapsed) s; RD_TESTBED=$STATE_DIR/testbed.json"
}

# lock: one mutating testbed.sh at a time on this machine (a second `up`
# waits for the first, then finds everything up).
lock() {
	exec 9>"${TMPDIR:-/tmp}/rdtb-testbed.lock"
	if ! flock -n 9; then
		log "waiting for another testbed.sh to finish"
		flock -w 1800 9 || die "timed out waiting for the lock"
	fi
}

main() {
	local cmd=${1:-}
	shift || true
	case "$cmd" in
	up | down | docker | images | host29-try) lock ;;
	esac
	case "$cmd" in
	up) cmd_up "$@" ;;
	down) cmd_down "$@" ;;
	status) cmd_status "$@" ;;
	docker) cmd_docker ;;
	images) cmd_images ;;
	host29-try) cmd_host29_try "$@" ;;
	*)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
		exit 2
		;;
	esac
}

main "$@"
