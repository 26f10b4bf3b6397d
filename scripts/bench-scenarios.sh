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
# Go duration such as 0.5ms; a round trip pays twice it), for PostgreSQL, MariaDB and
# Patroni (not SQLite). A space- or comma-separated list measures each delay in turn;
# "none" is the direct connection and 0 the proxy without delay (its own cost), e.g.
# --db-latency "none 0.5ms 1ms".
# With patroni, orderd's multi-host URL gets one proxy per member, and the standbys'
# replication goes through the same delay: each member's postgresql.connect_address
# (from which Patroni builds the standbys' primary_conninfo) is switched to a proxy in
# front of its PostgreSQL port, by rewriting the line in the member's patroni.yml and
# SIGHUP to its Patroni (PostgreSQL 15 takes the new primary_conninfo on a reload, no
# restart); "none" switches it back. So a synchronous commit pays the delay to the
# synchronous standby and back on top of orderd's round trip. Before each delay's runs
# the script waits until every standby streams from the leader's new address
# (pg_stat_wal_receiver.sender_port) with a synchronous standby in place, and prints the
# route and a single-row commit's latency on the leader (pgbench, one connection) to
# stderr and OUTDIR/patroni-replication.txt.
#
# Knobs: BENCH_DURATION (10s), BENCH_CONNS (800), BENCH_DBS (postgres mariadb sqlite; also
# patroni: the 3-node Patroni cluster with synchronous replication, through its multi-host URL),
# BENCH_STRATEGIES (batch), BENCH_SCENARIOS (hot catalogue-uniform catalogue carts keys
# sale), BENCH_ORDERD (an orderd binary to measure instead of this tree's, e.g. an
# older build for a before/after table; it must accept the same flags).
#
# BENCH_EVENTS=nats measures each database and strategy twice, with order events off
# and on: it starts the 3-node NATS cluster too (R3, sync_interval always) and the
# second orderd runs with --events nats://.../bench_<random> (rows "events nats").
# After each wrk run with events it waits for the relay to drain the outbox
# (flashorder_events_backlog 0) and reads orderd's publish lag histogram; then
# `orderbench run --events` (same scenario, connections and duration) consumes the
# stream, audits the events against its 201s and measures the publish lag, commit to
# arrival, with an HdrHistogram. A second table compares on with off.
# The two orderds are up together and take turns per scenario (BENCH_REPEAT turns each,
# default 1), so that the machine's drift hits both alike. BENCH_EVENTS_RATES (e.g.
# "1000 2000") adds open-loop runs of `orderbench run --events --scenario hot --rate R`:
# the publish lag at a set rate rather than under the saturating closed loop.
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
events=${BENCH_EVENTS:-}
[[ -z $events || $events == nats ]] || { echo "bench-scenarios.sh: BENCH_EVENTS is nats or empty" >&2; exit 2; }
command -v wrk >/dev/null || { echo "bench-scenarios.sh: wrk is needed (apt-get install wrk)" >&2; exit 1; }

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
svc=()
for db in $dbs; do
	case $db in postgres) svc+=(postgres) ;; mariadb) svc+=(mariadb) ;; patroni) svc+=(patroni) ;; esac
done
[[ -n $events ]] && svc+=(nats)
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

# through URL LATENCY: sets url to URL with each host:port (one, or a multi-host list
# host1:p1,host2:p2) replaced by a netdelay proxy's that adds LATENCY each way (started,
# their PIDs in pids and proxy); to URL for "none".
# Not a command substitution: the proxies' PIDs must reach this shell's pids.
through() {
	url=$1 proxy=
	local lat=$2
	[[ $lat == none ]] && return
	local rest=${url#*://} userinfo=
	[[ $rest == *@* ]] && userinfo=${rest%%@*}@ rest=${rest#*@}
	local hostports=${rest%%/*} hp hosts=
	for hp in ${hostports//,/ }; do
		delayproxy "$hp" "$lat"
		proxy+="${proxy:+ }${pids[-1]}"
		hosts+="${hosts:+,}127.0.0.1:$dport"
	done
	url="${url%%://*}://${userinfo}$hosts/${rest#*/}"
}

# delayproxy HOST:PORT LATENCY: starts a netdelay proxy to HOST:PORT on a free port and
# waits for it to listen; sets dport to its port and appends its PID to pids.
delayproxy() {
	dport=$(freeport)
	"$out/orderbench" netdelay --listen "127.0.0.1:$dport" --upstream "$1" --delay "$2" >>"$out/netdelay.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$dport") 2>/dev/null && break; sleep 0.1; done
}

# patroni_replication LATENCY: routes the Patroni standbys' replication through delay
# proxies that add LATENCY each way ("none": directly), so that a synchronous commit pays
# the delay to the standby and back. Patroni builds a standby's primary_conninfo from the
# leader's postgresql.connect_address: each member gets a proxy (upstream its own
# PostgreSQL port) as connect_address, written into its patroni.yml (services.sh's) and
# read again on SIGHUP; PostgreSQL 15 takes a new primary_conninfo with a reload, so the
# standbys reconnect without a restart. Waits until every standby streams from the
# leader's new address and the leader has a synchronous standby again, stops the previous
# proxies, and prints the route and the latency of a single-row commit on the leader
# (pgbench, one direct connection, 2 s) to stderr and $out/patroni-replication.txt.
reppids=()
pgport() { local v=FLASHORDER_PATRONI_$1_PG_PORT; echo "${!v}"; }
patroni_replication() {
	local lat=$1 n pidfile connect=() old=("${reppids[@]}") t ok leader rec recv sync r route recvs=()
	reppids=()
	for n in 1 2 3; do
		if [[ $lat == none ]]; then
			connect[n]=$(pgport "$n")
		else
			delayproxy "127.0.0.1:$(pgport "$n")" "$lat"
			connect[n]=$dport
			reppids+=("${pids[-1]}")
		fi
		pidfile=FLASHORDER_PATRONI_${n}_PIDFILE
		sed -i "/^postgresql:/,/^[^ ]/ s/^  connect_address: .*/  connect_address: 127.0.0.1:${connect[n]}/" "$(dirname "${!pidfile}")/patroni.yml"
		kill -HUP "$(cat "${!pidfile}")"
	done
	for t in $(seq 120); do
		ok=1 leader= route=
		for n in 1 2 3; do
			r=$(psql "postgres://postgres@127.0.0.1:$(pgport "$n")/postgres?sslmode=disable" -AtF' ' -c "SELECT pg_is_in_recovery(),
				(SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'),
				coalesce((SELECT status || ':' || sender_port FROM pg_stat_wal_receiver), '-')" 2>/dev/null) || { ok=0; break; }
			read -r rec sync recv <<<"$r"
			route+="${route:+;} patroni-$n $([[ $rec == f ]] && echo "primary ($sync sync standby)" || echo "standby ($recv)")"
			if [[ $rec == f ]]; then
				[[ -z $leader && $sync == 1 ]] || ok=0
				leader=$n
			else
				recvs[n]=$recv
			fi
		done
		if ((ok)) && [[ -n $leader ]]; then
			for n in 1 2 3; do [[ $n == "$leader" || ${recvs[n]} == "streaming:${connect[leader]}" ]] || ok=0; done
			((ok)) && break
		fi
		sleep 0.5
	done
	((ok)) && [[ -n $leader ]] || { echo "bench-scenarios.sh: patroni replication not settled at $lat:$route" >&2; exit 1; }
	for n in "${old[@]}"; do kill "$n"; wait "$n" 2>/dev/null || true; done
	psql "postgres://postgres@127.0.0.1:$(pgport "$leader")/postgres?sslmode=disable" -qc "CREATE TABLE IF NOT EXISTS bench_commit_probe (x int)"
	echo "INSERT INTO bench_commit_probe VALUES (1);" >"$out/.commit-probe.sql"
	r=$(pgbench -n -c1 -T2 -f "$out/.commit-probe.sql" "postgres://postgres@127.0.0.1:$(pgport "$leader")/postgres?sslmode=disable" 2>&1 | sed -n 's/^latency average = //p')
	echo "patroni replication ${lat/none/direct} each way (standbys stream from the leader's connect_address 127.0.0.1:${connect[leader]}):$route; a single-row commit on the leader: ${r:-?}" | tee -a "$out/patroni-replication.txt" >&2
}

echo "| database | db delay each way | strategy | scenario | orders/s | vs hot | vs no-op ceiling ($ceil/s, p99 $ceilp99 ms) | p99 ms | socket errors | answers |"
echo "|---|---|---|---|---|---|---|---|---|---|"
declare -A offrate oport opid oproxy hotrate
evrows=() obrows=()
reps=${BENCH_REPEAT:-1}
for db in $dbs; do
	for lat in $latencies; do
	[[ $lat != none && $db == sqlite ]] && { echo "bench-scenarios.sh: --db-latency is for postgres, mariadb and patroni; $db skipped at $lat" >&2; continue; }
	# Patroni: the standbys' replication goes through the same delay as orderd's connections.
	[[ $db != patroni ]] || patroni_replication "$lat"
	for strategy in $strategies; do
	# One orderd per events mode (off, and nats with BENCH_EVENTS), each on a database of
	# its own, all up at once: the modes take turns per scenario and repetition, so that
	# the machine's drift hits them alike; the relay drains before the next turn.
	evurl=
	for ev in off $events; do
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
		evargs=()
		if [[ $ev == nats ]]; then
			evurl="$FLASHORDER_TEST_NATS/bench_$RANDOM$RANDOM"
			evargs=(--events "$evurl")
		fi
		"$orderd" --listen "127.0.0.1:$port" --db "$url" --strategy "$strategy" --admin-token bench --log-level error "${evargs[@]}" >>"$out/orderd.log" 2>&1 &
		pids+=($!)
		opid[$ev]=$! oproxy[$ev]=$proxy oport[$ev]=$port
		waitup "http://127.0.0.1:$port/healthz" || { echo "orderd did not start ($db $strategy)" >&2; exit 1; }
	done
	hotrate=()
	for sc in $scenarios; do
		limit=0 vars=()
		case $sc in
		catalogue-uniform) vars=(ZIPF=0) name=catalogue ;;
		sale) limit=3 name=sale ;;
		*) name=$sc ;;
		esac
		for ev in off $events; do
			for i in $(seq 0 99); do
				curl -fsS -o /dev/null -X PUT "http://127.0.0.1:${oport[$ev]}/api/v1/products/bench-$i" -H 'Authorization: Bearer bench' \
					-H 'Content-Type: application/json' -d "{\"name\":\"bench-$i\",\"price_cents\":1999,\"stock\":10000000,\"per_user_limit\":$limit}"
			done
		done
		for rep in $(seq "$reps"); do
		for ev in off $events; do
			port=${oport[$ev]} label=$db
			[[ $ev == nats ]] && label="$db, events nats" lag0=$(lag_buckets "http://127.0.0.1:$port")
			batch_metrics "http://127.0.0.1:$port" || true
			IFS='|' read -r rate p99 errs answers < <(wrkrun "http://127.0.0.1:$port" "$name" "${vars[@]}")
			if [[ $strategy == batch ]]; then batch_metrics "http://127.0.0.1:$port" "$label ${lat/none/direct} $strategy $sc" || true; fi
			[[ $sc == hot && -z ${hotrate[$ev]:-} ]] && hotrate[$ev]=$rate
			hot=${hotrate[$ev]:-}
			vshot=$([[ -n $hot && $hot != 0 ]] && awk "BEGIN{printf \"%.2f\", $rate/$hot}" || echo -)
			vsceil=$(awk "BEGIN{printf \"%.2f\", $rate/$ceil}")
			echo "| $label | ${lat/none/direct} | $strategy | $sc | $rate | $vshot | $vsceil | $p99 | $errs | $answers |"
			if [[ $ev == off ]]; then
				offrate[$sc]=$rate
			else
				drain=$(events_drain "http://127.0.0.1:$port")
				within=$(lag_within "$lag0" "$(lag_buckets "http://127.0.0.1:$port")")
				off=${offrate[$sc]:-0}
				evrows+=("| $db | ${lat/none/direct} | $strategy | $sc | $rep | $off | $rate | $(awk "BEGIN{printf \"%.2f\", ($off > 0 ? $rate/$off : 0)}") | $vsceil | $drain | $within |")
			fi
		done
		done
		if [[ -n $evurl ]]; then
			ob="$out/events-$db-$strategy-$sc-$RANDOM.json" obargs=()
			[[ $sc == catalogue-uniform ]] && obargs=(--zipf 0)
			"$out/orderbench" run --url "http://127.0.0.1:${oport[nats]}" --admin-token bench --scenario "$name" --concurrency "$conns" \
				--duration "$duration" --events "$evurl" "${obargs[@]}" --quiet --json "$ob" >>"$out/orderbench-events.log" 2>&1 || true
			obrows+=("| $db | ${lat/none/direct} | $strategy | $sc | $conns (closed loop) | $(events_summary "$ob") |")
			events_drain "http://127.0.0.1:${oport[nats]}" >/dev/null
		fi
	done
	if [[ -n $evurl ]]; then
		for r in ${BENCH_EVENTS_RATES:-}; do
			ob="$out/events-$db-$strategy-rate$r-$RANDOM.json"
			"$out/orderbench" run --url "http://127.0.0.1:${oport[nats]}" --admin-token bench --scenario hot --rate "$r" --concurrency "$conns" \
				--duration "$duration" --events "$evurl" --quiet --json "$ob" >>"$out/orderbench-events.log" 2>&1 || true
			obrows+=("| $db | ${lat/none/direct} | $strategy | hot | $r/s (open loop) | $(events_summary "$ob") |")
			events_drain "http://127.0.0.1:${oport[nats]}" >/dev/null
		done
	fi
	for ev in off $events; do
		audit=$(curl -s -H 'Authorization: Bearer bench' "http://127.0.0.1:${oport[$ev]}/api/v1/admin/audit")
		echo "audit $db $lat $strategy events $ev: ${audit:0:12}" >&2
		kill "${opid[$ev]}"
		wait "${opid[$ev]}" 2>/dev/null || true
		for p in ${oproxy[$ev]}; do # the proxies started for this orderd
			kill "$p"
			wait "$p" 2>/dev/null || true
		done
	done
	done
	done
done
if ((${#evrows[@]})); then
	echo
	echo "| database | db delay each way | strategy | scenario | turn | orders/s events off | orders/s events nats | on/off | on vs no-op ceiling ($ceil/s) | relay drained after wrk (s) | relay lag <= 1 s (orderd's histogram) |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${evrows[@]}"
fi
if ((${#obrows[@]})); then
	echo
	echo "| database | db delay each way | strategy | scenario | load | orderbench --events: orders/s, audit, events, duplicates, publish lag p50 / p99 / max ms |"
	echo "|---|---|---|---|---|---|"
	printf '%s\n' "${obrows[@]}"
fi
