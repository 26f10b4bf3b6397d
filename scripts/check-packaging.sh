#!/usr/bin/env bash
# Checks the packaging (Dockerfile, docker-compose.yml, deploy/) as far as this
# machine allows; each check says whether it ran or why it was skipped.
#
#   scripts/check-packaging.sh
#
# 1. builds every command as the Dockerfile does (CGO_ENABLED=0 -trimpath) and
#    proves each binary static (file, ldd), and that orderd starts and answers
#    /healthz and /openapi.json from the build;
# 2. go test -run TestPackaging ./internal/doccheck: compose YAML, services, ORDERD_*
#    variables in compose, Dockerfile, unit and env example are real flags;
# 3. docker compose config, when the compose plugin is installed;
# 4. systemd-analyze verify (any warning fails) and security --offline on the
#    unit, when systemd-analyze is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'check-packaging: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/flashorder-packaging.XXXXXX")
pid=
cleanup() {
	[[ -n $pid ]] && kill "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

log "1. static build (CGO_ENABLED=0 go build -trimpath ./cmd/...)"
CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o "$tmp/bin/" ./cmd/...
for bin in "$tmp"/bin/*; do
	desc=$(file -b "$bin")
	[[ $desc == *"statically linked"* ]] || die "$(basename "$bin") is not static: $desc"
	if ldd "$bin" >/dev/null 2>&1; then die "ldd lists libraries for $(basename "$bin")"; fi
	log "   $(basename "$bin"): ${desc%%, Go BuildID*}"
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$tmp" && exec ./bin/orderd --listen "127.0.0.1:$port" --db "sqlite://$tmp/data/flashorder.db" --admin-token x 2>"$tmp/orderd.log") &
pid=$!
for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" | grep -q '"ok"' || die "static orderd does not answer /healthz: $(cat "$tmp/orderd.log")"
curl -fsS "http://127.0.0.1:$port/openapi.json" | grep -q '"openapi": "3' || die "static orderd does not serve /openapi.json"
log "   static orderd answered /healthz and /openapi.json"
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=

log "2. go test -run TestPackaging ./internal/doccheck"
go test -count=1 -run TestPackaging ./internal/doccheck >/dev/null

log "3. docker compose config"
if docker compose version >/dev/null 2>&1; then
	ORDERD_ADMIN_TOKEN=check docker compose config --quiet
	log "   docker compose config: ok"
else
	log "   skipped: the docker compose plugin is not installed"
fi
if docker info >/dev/null 2>&1; then
	docker build --check . && log "   docker build --check: ok"
else
	log "   skipped docker build: no Docker engine"
fi

log "4. systemd-analyze"
if command -v systemd-analyze >/dev/null 2>&1; then
	# verify needs ExecStart to exist: point it at the binary just built.
	sed "s#/usr/local/bin/orderd#$tmp/bin/orderd#" deploy/orderd.service >"$tmp/orderd.service"
	out=$(systemd-analyze verify "$tmp/orderd.service" 2>&1) || die "systemd-analyze verify: $out"
	[[ -z $out ]] || die "systemd-analyze verify warns: $out"
	log "   systemd-analyze verify: ok"
	exposure=$(systemd-analyze security --offline=true "$tmp/orderd.service" 2>&1 | grep -o 'Overall exposure level.*' || true)
	log "   systemd-analyze security: ${exposure:-unknown}"
else
	log "   skipped: systemd-analyze is not installed"
fi
log "all checks that could run passed"
