#!/usr/bin/env bash
# Produces the waiting-room table of docs/BENCHMARKS.md with plain wrk: joins (a new
# user per request) and polls (random tickets of a queue of BENCH_WAITING buyers) of a
# product sold through a waiting room, next to the no-op ceiling (`orderbench noop`,
# GET and POST) measured in the same run. One orderd on durable PostgreSQL
# (FLASHORDER_DURABLE=1) with the queue on Redis, default flags otherwise. Prints one
# Markdown table.
#
#   scripts/bench-queue.sh [OUTDIR]      (default: bench-results/)
#
# Knobs: BENCH_DURATION (8s), BENCH_CONNS (800), BENCH_WAITING (20000), BENCH_ORDERD
# (an orderd binary to measure instead of this tree's), BENCH_ORDERD_ARGS (extra orderd
# flags), BENCH_ORDERBENCH (the orderbench binary serving the no-op ceiling).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-bench-results}
mkdir -p "$out"
duration=${BENCH_DURATION:-8s}
conns=${BENCH_CONNS:-800}
waiting=${BENCH_WAITING:-20000}
command -v wrk >/dev/null || { echo "bench-queue.sh: wrk is needed (apt-get install wrk)" >&2; exit 1; }

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
bench_services postgres redis

orderd=${BENCH_ORDERD:-$out/orderd}
[[ -n ${BENCH_ORDERD:-} ]] || go build -o "$out/orderd" ./cmd/orderd
orderbench=${BENCH_ORDERBENCH:-$out/orderbench}
[[ -n ${BENCH_ORDERBENCH:-} ]] || go build -o "$out/orderbench" ./cmd/orderbench

machine_lines "PostgreSQL fsync=on synchronous_commit=on; Redis appendonly everysec"

noop_ceilings "$orderbench"

token=bench-admin
port=$(freeport)
# shellcheck disable=SC2086
"$orderd" --listen "127.0.0.1:$port" --db "$FLASHORDER_TEST_POSTGRES_URL" --admin-token "$token" \
	--idempotency "$FLASHORDER_TEST_REDIS_URL" --admission-secret bench-admission-secret-of-32-bytes! \
	--log-level error ${BENCH_ORDERD_ARGS:-} &
pids+=($!)
url="http://127.0.0.1:$port"
waitup "$url/healthz" || { echo "orderd did not start" >&2; exit 1; }
# Both sales start in an hour: the crowd before T0 joins the pre-queue and polls.
later=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
put queue-join0 "{\"name\":\"Join\",\"price_cents\":100,\"stock\":1000,\"admission\":\"queue\",\"starts_at\":\"$later\"}"
put queue-poll0 "{\"name\":\"Poll\",\"price_cents\":100,\"stock\":1000,\"admission\":\"queue\",\"starts_at\":\"$later\"}"
# The waiting buyers of the poll runs: pre-queue tickets (the sale starts in an
# hour), joined over keep-alive connections.
python3 - "$url" "$waiting" "$out/tickets.txt" <<'PY'
import http.client, json, sys, threading, urllib.parse
url, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host = urllib.parse.urlparse(url).netloc
tickets, lock = [], threading.Lock()
def work(w):
    c = http.client.HTTPConnection(host)
    for i in range(w, n, 16):
        c.request("POST", "/api/v1/products/queue-poll0/queue", json.dumps({"user_id": "poll-%d" % i}), {"Content-Type": "application/json"})
        r = c.getresponse(); body = r.read()
        if r.status != 202:
            sys.exit("join: %d %s" % (r.status, body))
        with lock: tickets.append(json.loads(body)["ticket"])
ts = [threading.Thread(target=work, args=(w,)) for w in range(16)]
[t.start() for t in ts]; [t.join() for t in ts]
open(path, "w").write("\n".join(tickets) + "\n")
PY

echo "| request | answers/s | vs no-op | p99 ms | socket errors | answers |"
echo "|---|---|---|---|---|---|"
echo "| no-op POST (ceiling) | $ceil | 1.00 | $ceilp99 | | |"
echo "| no-op GET (ceiling) | $gceil | 1.00 | $gceilp99 | | |"
row "join (POST, a new user each)" "$ceil" "$ceilp99" join SKU_PREFIX=queue-join
# The instance's polls answered from memory, all queues (the counter is per queue, and
# counted at each admission round: read it a round after the run).
memory_polls() { sleep 1.5; curl -s "$url/metrics" | awk '/^flashorder_queue_polls_from_memory_total[{ ]/ { n += $NF } END { printf "%d", n }'; }
m0=$(memory_polls)
row "poll (GET, $waiting tickets waiting)" "$gceil" "$gceilp99" poll TICKETS="$out/tickets.txt"
# How many of the poll run's answers came from the instance's memory (the rest went to
# Redis): the share the pre-queue's memory path took under this load.
polled=$(sed -n 's/^requests \([0-9]*\),.*/\1/p' "$out/wrk.log" | tail -1)
awk -v m0="${m0:-0}" -v m1="$(memory_polls)" -v n="${polled:-0}" 'BEGIN { if (n > 0) printf "polls answered from memory: %d of %d (%.1f%%)\n", m1 - m0, n, (m1 - m0) * 100 / n }' | tee -a "$out/cpu.txt" >&2
