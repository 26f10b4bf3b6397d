#!/usr/bin/env bash
# Produces the traffic-shape tables of docs/BENCHMARKS.md with a plain wrk run:
# for each database and strategy, one orderd, and wrk (-t2, 800 connections) with
# scripts/wrk-scenario.lua for each scenario (hot, a uniform and a Zipf catalogue,
# carts, keys, sale), next to the no-op ceiling (`orderbench noop`) measured in the
# same run with the same script. Services are started durable (FLASHORDER_DURABLE=1)
# in a private state dir and stopped at the end. Prints one Markdown table; for `batch`,
# each scenario's batches (size, transaction, rows held: flashorder_batch_*) go to
# stderr and OUTDIR/batch-metrics.txt.
#
#   scripts/bench-scenarios.sh [--db-latency DELAYS] [OUTDIR]      (default: bench-results/)
#
# --db-latency (or BENCH_DB_LATENCY) puts orderd's database connections through
# `orderbench netdelay`, a TCP proxy that delays each direction by the given time (a
# Go duration such as 0.5ms; a round trip pays twice it), for PostgreSQL and MariaDB.
# A space- or comma-separated list measures each delay in turn; "none" is the direct
# connection and 0 the proxy without delay (its own cost), e.g.
# --db-latency "none 0.5ms 1ms".
#
# Knobs: BENCH_DURATION (10s), BENCH_CONNS (800), BENCH_DBS (postgres mariadb sqlite; also
# patroni: the 3-node Patroni cluster with synchronous replication, through its multi-host URL),
# BENCH_STRATEGIES (batch), BENCH_SCENARIOS (hot catalogue-uniform catalogue carts keys
# sale), BENCH_ORDERD (an orderd binary to measure instead of this tree's, e.g. an
# older build for a before/after table; it must accept the same flags).
set -euo pipefail
cd "$(dirname "$0")/.."

latencies=${BENCH_DB_LATENCY:-none}
while [[ ${1:-} == --* ]]; do
	case $1 in
	--db-latency) latencies=${2:?--db-latency needs a value}; shift 2 ;;
	--db-latency=*) latencies=${1#*=}; shift ;;
	*) echo "bench-scenarios.sh: unknown flag $1" >&2; exit 2 ;;
	esac
done
latencies=${latencies//,/ }

out=${1:-bench-results}
mkdir -p "$out"
duration=${BENCH_DURATION:-10s}
conns=${BENCH_CONNS:-800}
dbs=${BENCH_DBS:-postgres mariadb sqlite}
strategies=${BENCH_STRATEGIES:-batch}
scenarios=${BENCH_SCENARIOS:-hot catalogue-uniform catalogue carts keys sale}
command -v wrk >/dev/null || { echo "bench-scenarios.sh: wrk is needed (apt-get install wrk)" >&2; exit 1; }

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
svc=()
for db in $dbs; do
	case $db in postgres) svc+=(postgres) ;; mariadb) svc+=(mariadb) ;; patroni) svc+=(patroni) ;; esac
done
bench_services "${svc[@]}"

orderd=${BENCH_ORDERD:-$out/orderd}
[[ -n ${BENCH_ORDERD:-} ]] || go build -o "$out/orderd" ./cmd/orderd
go build -o "$out/orderbench" ./cmd/orderbench

machine_lines "PostgreSQL fsync=on synchronous_commit=on (patroni: the same on 3 nodes, synchronous_mode on: a commit waits for the synchronous standby's flush); MariaDB innodb_flush_log_at_trx_commit=1; SQLite WAL synchronous=FULL"

port=$(freeport)
"$out/orderbench" noop --listen "127.0.0.1:$port" >/dev/null &
pids+=($!)
waitup "http://127.0.0.1:$port/" || { echo "no-op server did not start" >&2; exit 1; }
IFS='|' read -r ceil ceilp99 _ _ < <(wrkrun "http://127.0.0.1:$port" hot)
kill "${pids[-1]}"

# through URL LATENCY: sets url to URL with its host:port replaced by a netdelay proxy's
# (started, its PID in pids and proxy) that adds LATENCY each way; to URL for "none".
# Not a command substitution: the proxy's PID must reach this shell's pids.
through() {
	url=$1 proxy=
	local lat=$2
	[[ $lat == none ]] && return
	local rest=${url#*://} userinfo=
	[[ $rest == *@* ]] && userinfo=${rest%%@*}@ rest=${rest#*@}
	local hostport=${rest%%/*} port
	port=$(freeport)
	"$out/orderbench" netdelay --listen "127.0.0.1:$port" --upstream "$hostport" --delay "$lat" >>"$out/netdelay.log" 2>&1 &
	proxy=$!
	pids+=("$proxy")
	for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
	url="${url%%://*}://${userinfo}127.0.0.1:$port/${rest#*/}"
}

echo "| database | db delay each way | strategy | scenario | orders/s | vs hot | vs no-op ceiling ($ceil/s, p99 $ceilp99 ms) | p99 ms | socket errors | answers |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for db in $dbs; do
	for lat in $latencies; do
	[[ $lat != none && ( $db == sqlite || $db == patroni ) ]] && { echo "bench-scenarios.sh: --db-latency is for postgres and mariadb; $db skipped at $lat" >&2; continue; }
	for strategy in $strategies; do
		case $db in
		postgres) name=bench_${strategy}_$RANDOM url="${FLASHORDER_TEST_POSTGRES_URL%/*}/$name?sslmode=disable"
			psql "$FLASHORDER_TEST_POSTGRES_URL" -qc "CREATE DATABASE $name" ;;
		mariadb) name=bench_${strategy}_$RANDOM url="${FLASHORDER_TEST_MYSQL_URL%/*}/$name"
			mysql -h 127.0.0.1 -P "$FLASHORDER_MARIADB_PORT" -u root -e "CREATE DATABASE $name" ;;
		patroni) name=bench_${strategy}_$RANDOM base=${FLASHORDER_TEST_PATRONI_URL%%\?*}
			url="${base%/*}/$name?${FLASHORDER_TEST_PATRONI_URL#*\?}"
			psql "$FLASHORDER_TEST_PATRONI_URL" -qc "CREATE DATABASE $name"
			sleep 2 ;; # the asynchronous replica replays it (a host without the database stops pgx)
		sqlite) url="sqlite://$out/bench-$strategy-$RANDOM.db" ;;
		esac
		through "$url" "$lat"
		port=$(freeport)
		"$orderd" --listen "127.0.0.1:$port" --db "$url" --strategy "$strategy" --admin-token bench --log-level error >>"$out/orderd.log" 2>&1 &
		pids+=($!)
		waitup "http://127.0.0.1:$port/healthz" || { echo "orderd did not start ($db $strategy)" >&2; exit 1; }
		hot=
		for sc in $scenarios; do
			limit=0 vars=()
			case $sc in
			catalogue-uniform) vars=(ZIPF=0) name=catalogue ;;
			sale) limit=3 name=sale ;;
			*) name=$sc ;;
			esac
			for i in $(seq 0 99); do
				curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$port/api/v1/products/bench-$i" -H 'Authorization: Bearer bench' \
					-H 'Content-Type: application/json' -d "{\"name\":\"bench-$i\",\"price_cents\":1999,\"stock\":10000000,\"per_user_limit\":$limit}"
			done
			batch_metrics "http://127.0.0.1:$port" || true
			IFS='|' read -r rate p99 errs answers < <(wrkrun "http://127.0.0.1:$port" "$name" "${vars[@]}")
			if [[ $strategy == batch ]]; then batch_metrics "http://127.0.0.1:$port" "$db ${lat/none/direct} $strategy $sc" || true; fi
			[[ $sc == hot ]] && hot=$rate
			vshot=$([[ -n $hot && $hot != 0 ]] && awk "BEGIN{printf \"%.2f\", $rate/$hot}" || echo -)
			vsceil=$(awk "BEGIN{printf \"%.2f\", $rate/$ceil}")
			echo "| $db | ${lat/none/direct} | $strategy | $sc | $rate | $vshot | $vsceil | $p99 | $errs | $answers |"
		done
		audit=$(curl -s -H 'Authorization: Bearer bench' "http://127.0.0.1:$port/api/v1/admin/audit")
		echo "audit $db $lat $strategy: ${audit:0:12}" >&2
		kill "${pids[-1]}"
		wait "${pids[-1]}" 2>/dev/null || true
		if [[ -n $proxy ]]; then # the proxy started for this orderd
			kill "$proxy"
			wait "$proxy" 2>/dev/null || true
		fi
	done
	done
done
