#!/usr/bin/env bash
# The project's one test command (CI runs it through .ci/run).
#
#   scripts/test.sh [go test flags...]     e.g. scripts/test.sh -run TestCheckout -v
#
# 1. gofmt -l must list nothing, go vet ./... must pass, and internal/failpoint's
#    `-tags failpoints` variant must vet and test clean (cheap, so they fail fast before any
#    service is started);
# 2. starts PostgreSQL, MariaDB, Redis, ZooKeeper (single node and the 3-node ensemble), etcd, a
#    3-node Patroni cluster (PostgreSQL with synchronous replication), a 3-node NATS JetStream
#    cluster (nats-server built from its Go module once) and a 3-master Redis Cluster
#    (the waiting room's cluster store) with scripts/services.sh in a private
#    throw-away state dir (never the developer's own set), exports their addresses
#    (FLASHORDER_TEST_*) plus FLASHORDER_REQUIRE_SERVICES=1 so no test can silently skip;
# 3. go test -race -count=1 -p 1 -timeout 40m ./... "$@", and returns its exit status
#    (-p 1: one package's tests at a time; the end-to-end and fault packages each load
#    the 2 cores fully, and together they could push requests past server timeouts);
# 4. always stops the services and deletes their state, also on failure or Ctrl-C.
#
# gcc (for -race), promtool (Debian's prometheus package) and chromium are installed
# with apt-get when missing.
#
# The Go build cache (GOCACHE) is left alone on purpose: a cold build of this module's
# dependencies takes minutes on 2 cores, a warm one seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH (need the version in go.mod: $(sed -n 's/^go //p' go.mod))"

# apt_install WHY PACKAGE...: installs Debian packages (needs root).
apt_install() {
	local why=$1
	shift
	((EUID == 0)) || die "$why; install $* (apt-get)"
	log "installing $* ($why)"
	DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@" >/dev/null
}

# -race needs cgo, i.e. a C compiler; a fresh Debian has none (Go then silently sets
# CGO_ENABLED=0 and -race fails).
command -v gcc >/dev/null 2>&1 || apt_install "gcc is needed for go test -race" gcc libc6-dev
export CGO_ENABLED=1

# Tools the tests drive: promtool checks deploy/prometheus (Debian's prometheus package
# has it), headless Chromium renders orderbench's HTML report. Under
# FLASHORDER_REQUIRE_SERVICES=1 a test fails when its tool is missing.
command -v promtool >/dev/null 2>&1 || apt_install "promtool checks the alert rules" prometheus
command -v chromium >/dev/null 2>&1 || apt_install "chromium renders the orderbench report" chromium

# With no Go packages yet there is nothing to check or test (go vet/test would fail on that).
# (go list succeeds with empty output then; a real error such as a broken go.mod still fails here.)
pkgs=$(go list ./...)
if [[ -z $pkgs ]]; then
	log "no Go packages found; nothing to test"
	exit 0
fi

# gofmt: every .go file outside vendor/ and testdata/ must be formatted.
mapfile -t gofiles < <(find . -name '*.go' -not -path './.git/*' -not -path './vendor/*' \
	-not -path '*/testdata/*' -type f)
if ((${#gofiles[@]})); then
	unformatted=$(gofmt -l "${gofiles[@]}")
	if [[ -n $unformatted ]]; then
		log "gofmt -l lists unformatted files (run gofmt -w):"
		echo "$unformatted" >&2
		exit 1
	fi
fi

log "go vet ./..."
go vet ./...
# The fault tests build orderd with -tags failpoints (internal/failpoint): vet and test
# that variant of the package too.
go vet -tags failpoints ./internal/failpoint ./checkout
go test -count=1 -tags failpoints ./internal/failpoint

# Services in a private state dir; the EXIT trap removes them whatever happens below.
FLASHORDER_SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/flashorder-test.XXXXXX")
export FLASHORDER_SERVICES_DIR
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	./scripts/services.sh stop || log "warning: stopping the services failed (state in $FLASHORDER_SERVICES_DIR)"
	exit "$rc"
}
trap cleanup EXIT
# Make Ctrl-C / SIGTERM end the script through the EXIT trap (with the usual 128+N status).
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting services in $FLASHORDER_SERVICES_DIR"
./scripts/services.sh start postgres mariadb redis zookeeper etcd zk3 patroni nats redis-cluster
set -a
# shellcheck source=/dev/null # written by services.sh at run time
. "$FLASHORDER_SERVICES_DIR/env"
set +a
export FLASHORDER_REQUIRE_SERVICES=1

log "go test -race -count=1 -p 1 -timeout 40m ./... $*"
# go test runs as a background job in its own process group (set -m) and we `wait` for it:
# a trapped signal interrupts `wait` at once (a foreground child would first have to finish,
# up to 20 minutes), and the whole group (go plus the test binaries it runs) can be signalled.
# shellcheck disable=SC2317 # invoked by the traps
stop_gotest() {
	local sig=$1 i
	kill "-$sig" -- "-$GOTEST_PID" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$GOTEST_PID" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL -- "-$GOTEST_PID" 2>/dev/null || true
}
set -m
go test -race -count=1 -p 1 -timeout 40m ./... "$@" &
GOTEST_PID=$!
set +m
trap 'stop_gotest INT; exit 130' INT
trap 'stop_gotest TERM; exit 143' TERM
rc=0
wait "$GOTEST_PID" || rc=$?
exit "$rc"
