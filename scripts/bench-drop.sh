#!/usr/bin/env bash
# Produces the drop table of docs/BENCHMARKS.md with plain wrk: the requests that make
# up most of a drop (the product page, orders before the start, orders after the
# sell-out with and without a per-user limit), next to the hot-SKU order rate and the
# no-op ceiling (`orderbench noop`, GET and POST) measured in the same run. One orderd
# on durable PostgreSQL (FLASHORDER_DURABLE=1, a private state dir stopped at the end),
# default strategy and caches. Prints one Markdown table.
#
#   scripts/bench-drop.sh [OUTDIR]      (default: bench-results/)
#
# Knobs: BENCH_DURATION (8s), BENCH_CONNS (800), BENCH_USERS (100000: the user pool of
# the sold-out runs with a per-user limit), BENCH_ORDERD (an orderd binary to measure
# instead of this tree's, e.g. an older build for a before/after table), BENCH_ORDERD_ARGS
# (extra orderd flags), BENCH_ORDERBENCH (the orderbench binary serving the no-op ceiling).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-bench-results}
mkdir -p "$out"
duration=${BENCH_DURATION:-8s}
conns=${BENCH_CONNS:-800}
users=${BENCH_USERS:-100000}
command -v wrk >/dev/null || { echo "bench-drop.sh: wrk is needed (apt-get install wrk)" >&2; exit 1; }

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
bench_services postgres

orderd=${BENCH_ORDERD:-$out/orderd}
[[ -n ${BENCH_ORDERD:-} ]] || go build -o "$out/orderd" ./cmd/orderd
orderbench=${BENCH_ORDERBENCH:-$out/orderbench}
[[ -n ${BENCH_ORDERBENCH:-} ]] || go build -o "$out/orderbench" ./cmd/orderbench

machine_lines "PostgreSQL fsync=on synchronous_commit=on"

noop_ceilings "$orderbench"

token=bench-admin
port=$(freeport)
# shellcheck disable=SC2086
"$orderd" --listen "127.0.0.1:$port" --db "$FLASHORDER_TEST_POSTGRES_URL" --admin-token "$token" \
	--log-level error ${BENCH_ORDERD_ARGS:-} &
pids+=($!)
url="http://127.0.0.1:$port"
waitup "$url/healthz" || { echo "orderd did not start" >&2; exit 1; }
later=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
put drop-page0 '{"name":"Page","price_cents":100,"stock":1000000,"per_user_limit":1}'
put drop-early0 "{\"name\":\"Early\",\"price_cents\":100,\"stock\":1000,\"per_user_limit\":1,\"starts_at\":\"$later\"}"
put drop-gone0 '{"name":"Gone","price_cents":100,"stock":1000}'
put drop-gonelim0 '{"name":"Gone, limit 1","price_cents":100,"stock":1000,"per_user_limit":1}'
put drop-hot0 '{"name":"Hot","price_cents":100,"stock":1000000000}'
# Sell both sold-out SKUs out first (the limited one to users of the pool).
BENCH_DURATION_SAVED=$duration
duration=2s
wrkrun "$url" hot SKU_PREFIX=drop-gone >/dev/null
wrkrun "$url" hot SKU_PREFIX=drop-gonelim USERS="$users" RUN=pool >/dev/null
duration=$BENCH_DURATION_SAVED

echo "| request | answers/s | vs no-op | p99 ms | socket errors | answers |"
echo "|---|---|---|---|---|---|"
echo "| no-op POST (ceiling) | $ceil | 1.00 | $ceilp99 | | |"
echo "| no-op GET (ceiling) | $gceil | 1.00 | $gceilp99 | | |"
row "product page (GET)" "$gceil" "$gceilp99" page SKU_PREFIX=drop-page
row "orders before the start, limit 1" "$ceil" "$ceilp99" hot SKU_PREFIX=drop-early
row "orders after the sell-out, no limit" "$ceil" "$ceilp99" hot SKU_PREFIX=drop-gone
row "orders after the sell-out, limit 1, $users users" "$ceil" "$ceilp99" hot SKU_PREFIX=drop-gonelim USERS="$users" RUN=pool
row "orders while stock lasts, one hot SKU" "$ceil" "$ceilp99" hot SKU_PREFIX=drop-hot
