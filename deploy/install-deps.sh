#!/usr/bin/env bash
# Installs the external programs leadstream's dev mode and tests need
# (Debian 12 packages): redis, clickhouse, kcat; with --test also chromium for
# the real-browser tests in e2e/, Node.js and npm when absent, and what the
# deploy/ tests run: podman with the runc runtime (build and run the image),
# prometheus (the server and promtool) and docker-compose (validates
# deploy/compose.yaml; no Docker engine needed).
# Idempotent: does nothing when they are all present.
#
#   deploy/install-deps.sh [--test] [EXTRA_PACKAGE...]
#
# Extra arguments are Debian packages installed as well if missing
# (e.g. `deploy/install-deps.sh chromium`). As root with apt-get available the
# missing packages are installed; otherwise the command to run is printed and
# the script exits 1.
set -euo pipefail

# command -> Debian package
declare -A pkg_of=(
	[redis-server]=redis-server
	[redis-cli]=redis-tools
	[clickhouse-server]=clickhouse-server
	[clickhouse-client]=clickhouse-client
	[kcat]=kcat
	# Headless browser of the real-client tests (e2e/): beacon, forms, consent.
	[chromium]=chromium
	# deploy/ tests: the container image (podman; runc because crun refuses
	# hybrid cgroup hosts), alert rules and dashboard queries (promtool,
	# prometheus), the compose file (docker-compose config).
	[podman]=podman
	[runc]=runc
	[promtool]=prometheus
	[prometheus]=prometheus
	[docker-compose]=docker-compose
)

# --test adds what only the tests need: chromium, Node.js and npm, podman,
# runc, prometheus, docker-compose, and zookeeper (with java) for the
# ClickHouse cluster the cluster-mode tests start.
cmds=(redis-server redis-cli clickhouse-server clickhouse-client kcat)
tests=false
if [[ ${1:-} == --test ]]; then
	tests=true
	cmds+=(chromium podman runc promtool prometheus docker-compose)
	shift
fi

missing=()
for cmd in "${cmds[@]}"; do
	if ! command -v "$cmd" >/dev/null 2>&1 && [[ " ${missing[*]} " != *" ${pkg_of[$cmd]} "* ]]; then
		missing+=("${pkg_of[$cmd]}")
	fi
done
if $tests; then
	# Node.js and npm run the e2e tests' clients (playwright-core, analytics-node).
	# Any Node.js >= 18 does; Debian's packages are the fallback when none is there.
	command -v node >/dev/null 2>&1 || missing+=(nodejs)
	command -v npm >/dev/null 2>&1 || missing+=(npm)
	# ZooKeeper is a jar, not a command: the tests run it with java and
	# slf4j-simple (internal/localsvc/zookeeper.go).
	[[ -f /usr/share/java/zookeeper.jar ]] || missing+=(zookeeper)
	[[ -f /usr/share/java/slf4j-simple.jar ]] || missing+=(libslf4j-java)
	command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
fi
for pkg in "$@"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
	echo "install-deps: all dependencies present"
	exit 0
fi

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: installing ${missing[*]}"
	apt-get update -q
	# clickhouse-server's postinst may try to start the service; a
	# "policy-rc.d denied execution" message in containers is expected.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	exit 0
fi

echo "install-deps: missing packages: ${missing[*]}" >&2
echo "install-deps: run: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
exit 1
