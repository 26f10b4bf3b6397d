#!/usr/bin/env bash
# Produces the strategy tables of docs/BENCHMARKS.md: `orderbench compare` of every
# strategy against the no-op Gin ceiling, for one hot SKU at 800 clients on SQLite,
# PostgreSQL (synchronous_commit on) and MariaDB (innodb_flush_log_at_trx_commit=1),
# then 100 SKUs uniform and Zipf on PostgreSQL. Services are started durable
# (FLASHORDER_DURABLE=1) in a private state dir and stopped at the end.
#
#   scripts/bench.sh [OUTDIR]      (default: bench-results/)
#
# Knobs: BENCH_DURATION (20s), BENCH_WARMUP (3s), BENCH_CLIENTS (800),
# BENCH_STRATEGIES (row,lock,segment,batch), BENCH_DBS (sqlite postgres mariadb).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-bench-results}
mkdir -p "$out"
duration=${BENCH_DURATION:-20s}
warmup=${BENCH_WARMUP:-3s}
clients=${BENCH_CLIENTS:-800}
strategies=${BENCH_STRATEGIES:-row,lock,segment,batch}
dbs=${BENCH_DBS:-sqlite postgres mariadb}

FLASHORDER_SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/flashorder-bench.XXXXXX")
export FLASHORDER_SERVICES_DIR FLASHORDER_DURABLE=1
trap './scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
./scripts/services.sh start postgres mariadb zookeeper
set -a
# shellcheck source=/dev/null
. "$FLASHORDER_SERVICES_DIR/env"
set +a

go build -o "$out/orderd" ./cmd/orderd
go build -o "$out/orderbench" ./cmd/orderbench
lock="zk://${FLASHORDER_TEST_ZK_ADDRS}/flashorder-bench"

{
	echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "durability: PostgreSQL fsync=on synchronous_commit=on; MariaDB innodb_flush_log_at_trx_commit=1; SQLite WAL synchronous=FULL"
} | tee "$out/machine.txt"

compare() { # name, then compare flags
	local name=$1
	shift
	echo "== $name"
	"$out/orderbench" compare --quiet --orderd "$out/orderd" --lock "$lock" --strategies "$strategies" \
		--concurrency "$clients" --duration "$duration" --warmup "$warmup" \
		--json "$out/$name.json" --html "$out/$name.html" "$@" | tee "$out/$name.txt"
}

for db in $dbs; do
	case $db in
	sqlite) compare hot-sqlite ;;
	postgres) compare hot-postgres --db "$FLASHORDER_TEST_POSTGRES_URL" --fresh-db ;;
	mariadb) compare hot-mariadb --db "$FLASHORDER_TEST_MYSQL_URL" --fresh-db ;;
	esac
done
compare uniform100-postgres --db "$FLASHORDER_TEST_POSTGRES_URL" --fresh-db --skus 100
compare zipf100-postgres --db "$FLASHORDER_TEST_POSTGRES_URL" --fresh-db --skus 100 --zipf 1.2
