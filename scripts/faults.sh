#!/usr/bin/env bash
# The long form of the fault tests (internal/testkit/cluster, TestFaults): a private PostgreSQL, MariaDB,
# Redis and 3-node ZooKeeper ensemble (scripts/services.sh, durable settings), 3 orderd
# processes per scenario, hundreds of clients (5,000 in the burst) for tens of seconds per
# scenario, one fault each. Prints the Markdown report (the figures of docs/RELIABILITY.md)
# and writes it to the file given as the first argument (default: faults-report.md).
#
#   scripts/faults.sh [REPORT.md] [go test flags...]     e.g. scripts/faults.sh /tmp/r.md -run TestFaults/burst
#
# The short form of the same scenarios runs in scripts/test.sh. Takes about 10 minutes on 2 cores.
# FAULTS_RUN=TestPatroniFaults runs the database failover scenarios (a 3-node Patroni cluster)
# instead; their report goes to REPORT-patroni.md.
set -euo pipefail
cd "$(dirname "$0")/.."

report=${1:-faults-report.md}
(($#)) && shift
[[ $report == /* ]] || report=$PWD/$report

export FLASHORDER_SERVICES_SCRIPT=$PWD/scripts/services.sh
export FLASHORDER_REQUIRE_SERVICES=1
export FLASHORDER_FAULTS=long
export FLASHORDER_FAULTS_REPORT=$report
# The database failover scenarios (FAULTS_RUN=TestPatroniFaults) write theirs beside it.
export FLASHORDER_PATRONI_REPORT=${report%.md}-patroni.md
rm -f "$report"

# The test builds orderd itself (warm Go build cache: seconds) and starts and stops its own
# services. No -race: the long form measures, the short form in test.sh checks for races.
rc=0
go test -count=1 -timeout 60m -v -run "${FAULTS_RUN:-TestFaults}" "$@" ./internal/testkit/cluster || rc=$?
if [[ -s $report ]]; then
	echo
	cat "$report"
	echo
	echo "faults.sh: report written to $report" >&2
fi
exit "$rc"
