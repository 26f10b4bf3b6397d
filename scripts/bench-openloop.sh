#!/usr/bin/env bash
# Produces the open-loop table of docs/BENCHMARKS.md (issue 24): the latency a buyer
# feels at a fixed arrival rate, with vegeta (a load generator nobody here wrote), for
# one hot SKU, against one orderd on durable PostgreSQL (FLASHORDER_DURABLE=1, a
# private state dir stopped at the end) and the no-op ceiling (`orderbench noop`) at
# the same rates. Prints one Markdown table: p50, p99, p99.9 and the answers by status;
# for `batch`, each rate's batches (size, transaction, rows held: flashorder_batch_*) go
# to stderr and OUTDIR/batch-metrics.txt.
#
#   scripts/bench-openloop.sh [OUTDIR]      (default: bench-results/)
#
# Knobs: BENCH_RATES (2000 4000 8000 10000), BENCH_DURATION (8s), BENCH_STRATEGY
# (batch), BENCH_ORDERD (an orderd binary to measure instead of this tree's),
# BENCH_VEGETA (the vegeta binary; default: vegeta on PATH, else installed with
# go install github.com/tsenart/vegeta/v12@v12.13.0 into OUTDIR/bin).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-bench-results}
mkdir -p "$out"
duration=${BENCH_DURATION:-8s}
rates=${BENCH_RATES:-2000 4000 8000 10000}
strategy=${BENCH_STRATEGY:-batch}
conns=800 # for bench-lib's helpers; vegeta opens what the rate needs

vegeta=${BENCH_VEGETA:-$(command -v vegeta || true)}
if [[ -z $vegeta ]]; then
	GOBIN=$(cd "$out" && pwd)/bin go install github.com/tsenart/vegeta/v12@v12.13.0
	vegeta=$out/bin/vegeta
fi

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
bench_services postgres

orderd=${BENCH_ORDERD:-$out/orderd}
[[ -n ${BENCH_ORDERD:-} ]] || go build -o "$out/orderd" ./cmd/orderd
go build -o "$out/orderbench" ./cmd/orderbench

machine_lines "PostgreSQL fsync=on synchronous_commit=on"

body=$out/openloop-body.json
echo '{"user_id":"open-loop","items":[{"sku":"open-hot","quantity":1}]}' >"$body"

# attack URL RATE: one vegeta run; prints "p50|p99|p99.9|answers" (p99.9 from
# vegeta's HDR histogram plot).
attack() {
	local url=$1 rate=$2 bin
	bin=$(mktemp "$out/vegeta.XXXXXX")
	printf 'POST %s/api/v1/orders\nContent-Type: application/json\n@%s\n' "$url" "$body" |
		"$vegeta" attack -rate="$rate" -duration="$duration" -timeout=10s -max-workers=4000 >"$bin"
	"$vegeta" report -type=json "$bin" | tee -a "$out/vegeta.jsonl" >"$bin.json"
	"$vegeta" report -type=hdrplot "$bin" >"$bin.hdr"
	python3 - "$bin.json" "$bin.hdr" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latencies"]
p999 = None
for line in open(sys.argv[2]):
    f = line.split()
    try:
        v, p = float(f[0]), float(f[1])
    except (ValueError, IndexError):
        continue
    if p >= 0.999:
        p999 = v
        break
ms = lambda ns: "%.1f" % (ns / 1e6)
codes = ", ".join("%s: %d" % kv for kv in sorted(r["status_codes"].items()))
print("%s|%s|%s|%s" % (ms(l["50th"]), ms(l["99th"]), "?" if p999 is None else "%.1f" % p999, codes))
PY
	rm -f "$bin" "$bin.json" "$bin.hdr"
}

port=$(freeport)
"$out/orderbench" noop --listen "127.0.0.1:$port" >/dev/null &
pids+=($!)
waitup "http://127.0.0.1:$port/" || { echo "no-op server did not start" >&2; exit 1; }
declare -A noop
for r in $rates; do noop[$r]=$(attack "http://127.0.0.1:$port" "$r"); done
kill "${pids[-1]}"

token=bench-admin
port=$(freeport)
"$orderd" --listen "127.0.0.1:$port" --db "$FLASHORDER_TEST_POSTGRES_URL" --admin-token "$token" \
	--strategy "$strategy" --log-level error &
pids+=($!)
url="http://127.0.0.1:$port"
waitup "$url/healthz" || { echo "orderd did not start" >&2; exit 1; }
curl -sf -X PUT "$url/api/v1/products/open-hot" -H "Authorization: Bearer $token" \
	-H 'Content-Type: application/json' -d '{"name":"Hot","price_cents":100,"stock":1000000000}' >/dev/null

echo "| arrival rate | no-op p50 / p99 / p99.9 ms | orderd ($strategy) p50 / p99 / p99.9 ms | orderd answers |"
echo "|---|---|---|---|"
for r in $rates; do
	IFS='|' read -r n50 n99 n999 _ <<<"${noop[$r]}"
	batch_metrics "$url" || true
	IFS='|' read -r o50 o99 o999 oans < <(attack "$url" "$r")
	if [[ $strategy == batch ]]; then batch_metrics "$url" "$strategy $r/s" || true; fi
	echo "| $r/s | $n50 / $n99 / $n999 | $o50 / $o99 / $o999 | $oans |"
done
