# Shared by the wrk benchmark scripts (bench-scenarios.sh, bench-drop.sh); source it
# after setting out (the results dir), duration and conns.
#
# bench_services SERVICE...: starts the services durable (FLASHORDER_DURABLE=1) in a
# private state dir, exports their addresses, and stops them (and every PID in pids)
# when the script exits.

pids=()
bench_cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	./scripts/services.sh stop >/dev/null 2>&1 || true
}

bench_services() {
	FLASHORDER_SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/flashorder-bench.XXXXXX")
	export FLASHORDER_SERVICES_DIR FLASHORDER_DURABLE=1
	trap bench_cleanup EXIT
	(($#)) && ./scripts/services.sh start "$@" >&2
	set -a
	# shellcheck source=/dev/null
	[[ -f $FLASHORDER_SERVICES_DIR/env ]] && . "$FLASHORDER_SERVICES_DIR/env"
	set +a
}

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitup() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }

# cpu_ticks: one line "NAME TICKS ..." with the CPU time (user + system, in clock ticks)
# used so far by the running processes of each name that does a benchmark's server-side
# work, and "busy" for the whole machine; cpu_split compares two such lines.
cpu_names=(orderd orderbench postgres mariadbd redis-server nats-server)
# orderd's process: BENCH_ORDERD's file name when it measures another build (a process's
# name is the first 15 characters of its file's).
orderd_process=${BENCH_ORDERD:-orderd}
orderd_process=${orderd_process##*/}
orderd_process=${orderd_process:0:15}
cpu_ticks() {
	local name process pid t line=""
	for name in "${cpu_names[@]}"; do
		t=0 process=$name
		[[ $name == orderd ]] && process=$orderd_process
		for pid in $(pgrep -x "$process"); do
			# utime and stime are fields 14 and 15; the name in field 2 has no spaces here.
			read -r -a f <"/proc/$pid/stat" 2>/dev/null || continue
			t=$((t + f[13] + f[14]))
		done
		line+="$name $t "
	done
	echo "$line busy $(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)"
}

# cpu_split LABEL BEFORE AFTER REQUESTS: appends to $out/cpu.txt (and stderr) the CPU
# time each kind of process spent per request between the two cpu_ticks lines, in
# microseconds; "rest" is the machine's busy time that no named process took: wrk
# (which has exited when the second line is taken), the kernel's interrupts, anything
# else running. Where a request's cost goes.
cpu_split() {
	local label=$1 before=$2 after=$3 n=$4
	((n > 0)) || return 0
	python3 - "$label" "$before" "$after" "$n" "$(getconf CLK_TCK)" <<'PY' | tee -a "$out/cpu.txt" >&2
import sys
label, before, after, n, hz = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4]), int(sys.argv[5])
b = dict(zip(before[::2], map(int, before[1::2]))); a = dict(zip(after[::2], map(int, after[1::2])))
us = lambda k: (a[k] - b[k]) * 1e6 / hz / n
named = [k for k in a if k != "busy" and us(k) >= 0.5]
parts = ["%s %.1f" % (k, us(k)) for k in named] + ["rest (wrk, kernel) %.1f" % (us("busy") - sum(us(k) for k in named))]
print("cpu per request, us: %s: %s; machine %.1f" % (label, ", ".join(parts), us("busy")))
PY
}

# wrkrun URL SCENARIO [VAR=value...]: one wrk run of scripts/wrk-scenario.lua (output
# appended to $out/wrk.log); prints "rate|p99|socket errors|answers". The CPU each kind
# of process spent per request goes to $out/cpu.txt and stderr (cpu_split).
wrkrun() {
	local url=$1 sc=$2
	shift 2
	local o before
	before=$(cpu_ticks)
	o=$(env SCENARIO="$sc" "$@" wrk -t2 -c"$conns" -d"$duration" --timeout 10s -s scripts/wrk-scenario.lua "$url" 2>&1)
	echo "$o" >>"$out/wrk.log"
	cpu_split "$sc $url" "$before" "$(cpu_ticks)" "$(echo "$o" | sed -n 's/^requests \([0-9]*\),.*/\1/p')"
	local rate p99 errs answers
	rate=$(echo "$o" | sed -n 's/^requests [0-9]*, \([0-9]*\)\/s.*/\1/p')
	p99=$(echo "$o" | sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p')
	errs=$(echo "$o" | sed -n 's/.*socket errors \([0-9]*\).*/\1/p')
	answers=$(echo "$o" | sed -n '/^answers:/,$p' | tail -n +2 | awk '{n=$NF; $NF=""; sub(/ +$/,""); sub(/^ +/,""); printf "%s%s: %s", sep, $0, n; sep=", "}')
	echo "${rate:-0}|${p99:-?}|${errs:-?}|${answers}"
}

# batch_metrics URL [LABEL]: the batch strategy's histograms of orderd at URL since the
# last call for URL (or its start): batches (and failed ones), orders per batch, the transaction's and the
# rows held's mean, and the rows held by bucket (counts of batches at or under each
# bound, in ms). With LABEL, appended to $out/batch-metrics.txt and printed to stderr;
# without, only the starting point of the next call.
batch_metrics() {
	local url=$1 label=${2:-} state
	state=$out/.batch-metrics-$(echo "$url" | tr -c 'a-z0-9' _)
	curl -s -o "$state.scrape" "$url/metrics" || return 0
	python3 - "$state" "$label" <<'PY' | tee -a "$out/batch-metrics.txt" >&2
import json, os, re, sys
state, label = sys.argv[1], sys.argv[2]
now = {}
for line in open(state + ".scrape"):
    m = re.match(r'(flashorder_batch_errors_total|flashorder_batch_(?:size|transaction_seconds|rows_held_seconds)_(?:sum|count|bucket))(?:\{le="([^"]+)"\})? (\S+)', line)
    if m:
        now[m.group(1) + (":" + m.group(2) if m.group(2) else "")] = float(m.group(3))
before = json.load(open(state)) if os.path.exists(state) else {}
json.dump(now, open(state, "w"))
if not label:
    sys.exit()
d = {k: v - before.get(k, 0) for k, v in now.items()}
n = d.get("flashorder_batch_size_count", 0)
held = d.get("flashorder_batch_rows_held_seconds_count", 0)
mean = lambda s, c: s / c if c else 0
buckets = sorted((float(k.split(":")[1]), v) for k, v in d.items()
                 if k.startswith("flashorder_batch_rows_held_seconds_bucket") and k.split(":")[1] != "+Inf")
cum = ", ".join("<=%g: %d" % (b * 1000, v) for b, v in buckets)
print("%s: batches %d (%d failed), orders/batch %.1f, transaction mean %.2f ms, rows held mean %.3f ms (%d batches; by bucket ms %s)" % (
    label, n, d.get("flashorder_batch_errors_total", 0), mean(d.get("flashorder_batch_size_sum", 0), n),
    1000 * mean(d.get("flashorder_batch_transaction_seconds_sum", 0), d.get("flashorder_batch_transaction_seconds_count", 0)),
    1000 * mean(d.get("flashorder_batch_rows_held_seconds_sum", 0), held), held, cum))
PY
}

# machine_lines: the machine and durability lines every table is printed with.
machine_lines() {
	echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/machine.txt" >&2
	echo "durability: $1" | tee -a "$out/machine.txt" >&2
}

# noop_ceilings ORDERBENCH: the no-op ceiling (`orderbench noop`), measured now: sets
# ceil and ceilp99 (POST, the hot order) and gceil and gceilp99 (GET, the product page).
noop_ceilings() {
	local port
	port=$(freeport)
	"$1" noop --listen "127.0.0.1:$port" >/dev/null &
	pids+=($!)
	waitup "http://127.0.0.1:$port/" || { echo "no-op server did not start" >&2; exit 1; }
	IFS='|' read -r ceil ceilp99 _ _ < <(wrkrun "http://127.0.0.1:$port" hot)
	IFS='|' read -r gceil gceilp99 _ _ < <(wrkrun "http://127.0.0.1:$port" page SKU_PREFIX=noop-page)
	kill "${pids[-1]}"
}

# put SKU JSON: PUTs a product through orderd at $url with the admin $token.
put() {
	curl -sf -X PUT "$url/api/v1/products/$1" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$2" >/dev/null
}

# row LABEL CEILING CEILING-P99 SCENARIO [VAR=value...]: one wrk run against $url,
# printed as a table row with its ratio to the ceiling.
row() {
	local label=$1 c=$2 cp=$3
	shift 3
	local rate p99 errs answers
	IFS='|' read -r rate p99 errs answers < <(wrkrun "$url" "$@")
	printf '| %s | %s | %.2f | %s (no-op %s) | %s | %s |\n' "$label" "$rate" "$(echo "$rate / $c" | bc -l)" "$p99" "$cp" "$errs" "$answers"
}

# events_drain URL: waits (up to 300 s) until orderd at URL reads no event backlog
# (flashorder_events_backlog 0, read by the relay once a second) and prints how long
# that took in seconds, or "not drained in 300 s".
events_drain() {
	local start=$EPOCHREALTIME n
	for _ in $(seq 3000); do
		n=$(curl -s "$1/metrics" | sed -n 's/^flashorder_events_backlog \(.*\)/\1/p')
		[[ $n == 0 ]] && { awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $start}"; return; }
		sleep 0.1
	done
	echo "not drained in 300 s"
}

# lag_buckets URL: orderd's publish lag histogram at URL: "events-within-1s total".
lag_buckets() {
	curl -s "$1/metrics" | awk '/^flashorder_events_publish_lag_seconds_bucket\{le="1"\}/ {w=$2} /^flashorder_events_publish_lag_seconds_count/ {c=$2} END {print w+0, c+0}'
}

# lag_within BEFORE AFTER: the share of the events published between two
# lag_buckets readings whose lag was at most 1 s, as "99.9% of N".
lag_within() {
	local w0 c0 w1 c1
	read -r w0 c0 <<<"$1"
	read -r w1 c1 <<<"$2"
	awk "BEGIN{n=$c1-$c0; printf \"%.1f%% of %d\", (n > 0 ? 100*($w1-$w0)/n : 0), n}"
}

# events_summary JSON: orderbench's results with --events in one cell.
events_summary() {
	python3 - "$1" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print("no results (%s)" % e)
    sys.exit()
a = r.get("audit") or {}
e = a.get("events") or {}
l = e.get("publish_lag") or {}
print("%.0f/s, audit %s, %d events (%d missing, %d gaps, %d orphans), %d duplicates, lag %.0f / %.0f / %.0f" % (
    r.get("orders_per_s", 0), "ok" if a.get("ok") else "FAILED (%d violations)" % len(a.get("violations") or []),
    e.get("consumed", 0), e.get("missing", 0), e.get("gaps", 0), e.get("orphans", 0), e.get("duplicates", 0),
    l.get("p50_ms", 0), l.get("p99_ms", 0), l.get("max_ms", 0)))
PY
}
