#!/usr/bin/env bash
# Start/stop the real backing services the flashorder tests run against:
# PostgreSQL, MariaDB, Redis, ZooKeeper (single node or a 3-node ensemble), etcd and NATS.
#
# Usage:
#   scripts/services.sh start [SERVICE...]    start (default: postgres mariadb redis zookeeper etcd)
#   scripts/services.sh stop [SERVICE...]     without SERVICE: stop everything and delete the state dir;
#                                             with SERVICE: stop just those, keeping port and data
#   scripts/services.sh restart SERVICE...    (re)start on the same port and data dir (fault tests)
#   scripts/services.sh kill SERVICE...       SIGKILL, to simulate a crash (restart brings it back)
#   scripts/services.sh env                   print the export lines of the running set
#   scripts/services.sh status                one line per service
#
#   scripts/services.sh switchover patroni    move the Patroni primary to the synchronous standby
#
# SERVICE: postgres mariadb redis zookeeper etcd zk3 (3-node ZooKeeper ensemble, only on request);
# redis-cluster (3-master Redis Cluster, only on request);
# zk3-1, zk3-2, zk3-3 address single ensemble members for stop/kill/restart.
# patroni (only on request): 3 PostgreSQL nodes under Patroni with synchronous replication, on the
# etcd of the same state dir (started with it). patroni-1..3 address single members;
# `kill patroni-primary` crashes the current primary's node (SIGKILL to its Patroni, postmaster
# and backends), `kill patroni-postmaster` kills only the primary's postmaster, `restart patroni`
# starts every member that is down (it rejoins as a replica, pg_rewind when needed). `env` prints
# FLASHORDER_TEST_PATRONI_URL (multi-host, target_session_attrs=read-write) and
# FLASHORDER_TEST_PATRONI_API (the members' REST endpoints); `status` shows each member's role.
# nats (only on request): 3 nats-server v2.15.2 processes clustered with JetStream
# (sync_interval: always: every acknowledged write is fsynced). Debian's nats-server (2.9) is
# never used: the server is built from its Go module (go install) into scripts/.bin (or
# $FLASHORDER_BIN_DIR) once, and reused. nats-1..3 address single members; `env` prints
# FLASHORDER_TEST_NATS (nats://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3) and per-member
# FLASHORDER_NATS_N_PIDFILE etc.
# redis-cluster (only on request): 3 redis-server processes in cluster mode, 3 masters without
# replicas (slots split by `redis-cli --cluster create`), each with its own client and cluster bus
# port. redis-cluster-1..3 address single members (a restarted member rejoins from its
# nodes.conf, its slots empty). `env` prints FLASHORDER_TEST_REDIS_CLUSTER
# (127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3) and per-member FLASHORDER_REDIS_CLUSTER_N_PORT etc.
#
# Everything (data, logs, pid files, configs) lives in one throw-away state directory:
# $FLASHORDER_SERVICES_DIR if set, else a fresh mktemp -d remembered in
# ${TMPDIR:-/tmp}/flashorder-services.current so that later `stop`/`env` find it.
# Every service listens on 127.0.0.1 on a free port picked at start: the machine is shared, so
# fixed defaults (5432, 3306, 6379, 2181, 2379, 8080) are never used.
#
# Environment knobs:
#   FLASHORDER_DURABLE=1              durable settings (fsync on etc.) instead of the fast test mode
#   FLASHORDER_SERVICES_TIMEOUT=60    seconds to wait for each service to become ready
#
# Needs root on a fresh Debian 12 (installs packages with apt-get, runs PostgreSQL as user postgres).
# Deliberately depends on nothing but bash, coreutils and util-linux (+ ss when present).
set -euo pipefail

# Non-login root shells sometimes lack the sbin dirs (mariadbd lives in /usr/sbin).
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
POINTER="${TMPDIR:-/tmp}/flashorder-services.current"
# Port claims must be visible to every concurrent run, whatever its TMPDIR, hence a fixed path.
PORT_CLAIMS=/tmp/flashorder-ports
MARKER=.flashorder-services
DEFAULT_SERVICES=(postgres mariadb redis zookeeper etcd)
# nats-server is built from its Go module (Debian's 2.9 lacks sync_interval and has known
# stream-loss bugs); the binary is cached per version under BIN_DIR.
NATS_VERSION=v2.15.2
BIN_DIR=${FLASHORDER_BIN_DIR:-$(dirname "$SELF")/.bin}
TIMEOUT=${FLASHORDER_SERVICES_TIMEOUT:-60}
DURABLE=${FLASHORDER_DURABLE:-0}
DIR=""
CMD=""

log() { printf 'services.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

# Microseconds since the epoch, without forking (EPOCHREALTIME may use ',' in some locales).
now_us() { local t=${EPOCHREALTIME//[.,]/}; echo "$t"; }
fmt_secs() { printf '%d.%02ds' $(($1 / 1000000)) $(($1 % 1000000 / 10000)); }

# pid_alive PID: the process exists and is not a zombie. Killed children here can linger as
# zombies for ~2 s until PID 1 reaps them, so state Z counts as dead.
pid_alive() {
	local pid=$1 stat
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
	stat=${stat##*) } # drop "pid (comm) ", comm may contain spaces
	[[ ${stat:0:1} != Z ]]
}

# wait_dead SECONDS PID...: wait until none of the PIDs is alive; return 1 on timeout.
wait_dead() {
	local deadline=$(($(now_us) + $1 * 1000000)) pid alive
	shift
	while :; do
		alive=0
		for pid in "$@"; do pid_alive "$pid" && alive=1; done
		((alive)) || return 0
		(($(now_us) < deadline)) || return 1
		sleep 0.05
	done
}

# Children of a process (PostgreSQL backends call setsid(), so a process-group kill misses them).
child_pids() {
	local p stat
	for p in /proc/[0-9]*; do
		stat=$(cat "$p/stat" 2>/dev/null) || continue
		stat=${stat##*) }
		read -r _ ppid _ <<<"$stat"
		[[ $ppid == "$1" ]] && echo "${p#/proc/}"
	done
	return 0
}

# tail_log FILE: last lines of a service log, for error messages.
tail_log() {
	[[ -s $1 ]] || { echo "    (no log at $1)"; return 0; }
	echo "    --- last lines of $1 ---"
	tail -n 25 "$1" | sed 's/^/    /'
}

# Is anything listening on (or accepting on) 127.0.0.1:PORT?
port_busy() {
	local port=$1
	if command -v ss >/dev/null 2>&1 && [[ -n $(ss -Htln "sport = :$port" 2>/dev/null) ]]; then
		return 0
	fi
	# Fallback/extra check without ss: a refused connect means free.
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# free_port: print a free port and claim it for $DIR.
# Ports come from below the kernel's ephemeral range (so outgoing connections never sit on them),
# are checked with ss and a connect, and are claimed with an atomic symlink
# /tmp/flashorder-ports/PORT -> state dir, so two concurrent runs never pick the same port in the
# window before the services bind. Claims whose state dir is gone are stale and get reused.
free_port() {
	local lo=20000 hi=32767 elo ehi span port target i
	if read -r elo ehi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
		if ((elo > 21000)); then
			hi=$((elo - 1))
		elif ((ehi < 64000)); then
			lo=$((ehi + 1)) hi=65000
		fi
	fi
	span=$((hi - lo + 1))
	mkdir -p "$PORT_CLAIMS"
	chmod 1777 "$PORT_CLAIMS" 2>/dev/null || true
	for ((i = 0; i < 500; i++)); do
		port=$((lo + ((RANDOM << 15) | RANDOM) % span))
		# -T: an existing claim is a symlink to a directory, and a plain `ln -s` would
		# follow it and succeed by creating a link inside that directory, so that one run
		# could hand the same port to two of its services (seen: etcd "address already in
		# use" on a port a NATS or Redis Cluster member had been given).
		if ! ln -sT "$DIR" "$PORT_CLAIMS/$port" 2>/dev/null; then
			target=$(readlink "$PORT_CLAIMS/$port" 2>/dev/null) || continue
			[[ -d $target ]] && continue # claimed by a live run
			rm -f "$PORT_CLAIMS/$port"
			ln -sT "$DIR" "$PORT_CLAIMS/$port" 2>/dev/null || continue
		fi
		if port_busy "$port"; then
			# Someone else (not one of our runs) uses it: leave the claim to die with our dir.
			continue
		fi
		echo "$port"
		return 0
	done
	die "could not find a free port in $lo-$hi"
}

release_ports() {
	local claim
	[[ -d $PORT_CLAIMS ]] || return 0
	for claim in "$PORT_CLAIMS"/*; do
		[[ -L $claim && $(readlink "$claim") == "$1" ]] && rm -f "$claim"
	done
	return 0
}

# spawn PIDFILE LOG CMD...: start CMD detached in its own session, stdio to LOG, and write its pid.
# The inner bash writes $$, closes every descriptor above stderr, and then execs CMD, so the pid
# file holds the service's own pid whether or not setsid had to fork, and the daemon holds no
# descriptor of ours: not fd 9 (our lock), nor one a caller's lock holds (`flock FILE
# services.sh start ...`, whose lock a daemon would otherwise keep until it is stopped).
spawn() {
	local pidfile=$1 logfile=$2
	shift 2
	rm -f "$pidfile"
	# shellcheck disable=SC2016 # $$, $0 and fd are for the inner shell
	setsid bash -c 'echo $$ >"$0" || exit 1
		for fd in /proc/$$/fd/*; do fd=${fd##*/}; ((fd > 2)) && eval "exec $fd>&-"; done
		exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
}

# AS_PG CMD...: run as the postgres user (PostgreSQL refuses to run as root). setpriv execs in
# place (unlike runuser/su, which stay around as a parent), so spawn's pid is the postmaster itself.
# An array rather than a function because spawn's inner bash must be able to exec it.
AS_PG=()
((EUID == 0)) && AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --reset-env --)
as_pg() { "${AS_PG[@]}" "$@"; }

# ---------------------------------------------------------------------------------------------
# Packages: installed with apt-get only when the binaries are missing.
# ---------------------------------------------------------------------------------------------

APT_UPDATED=0
apt_install() {
	((EUID == 0)) || die "missing packages ($*); run as root or install them"
	command -v apt-get >/dev/null 2>&1 || die "missing packages ($*) and no apt-get"
	local aptlog="${TMPDIR:-/tmp}/flashorder-apt.log"
	# Wait for the dpkg lock (another apt-get may be running) instead of failing at once.
	local opts=(-q -o DPkg::Lock::Timeout=600)
	log "installing $* (apt-get log: $aptlog)"
	if ((!APT_UPDATED)); then
		DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" update >>"$aptlog" 2>&1 ||
			{ tail -n 20 "$aptlog" >&2; die "apt-get update failed"; }
		APT_UPDATED=1
	fi
	# Where init scripts work (containers without systemd), the packages' postinst would start
	# the system-wide daemons on their default ports (5432, 3306, 6379, ...) on this shared
	# machine. A temporary policy-rc.d (exit 101 = "action forbidden") stops that.
	local policy=/usr/sbin/policy-rc.d ours=0 rc=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# temporary, from flashorder scripts/services.sh\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		ours=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y "$@" >>"$aptlog" 2>&1 || rc=$?
	((ours)) && rm -f "$policy"
	((rc == 0)) || { tail -n 20 "$aptlog" >&2; die "apt-get install $* failed"; }
}

pg_bindir() {
	local d
	d=$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	[[ -n $d && -x $d/initdb ]] && echo "$d"
}

zk_jar() {
	local j
	for j in /usr/share/java/zookeeper.jar /usr/share/java/zookeeper-[0-9]*.jar; do
		[[ -f $j ]] && { echo "$j"; return 0; }
	done
	return 1
}

# slf4j binding for ZooKeeper. The Debian zookeeper.jar's manifest Class-Path already names its
# runtime dependencies (zookeeper-jute, netty, slf4j-api, metrics, snappy, ...) as absolute
# /usr/share/java paths, so `java -cp zookeeper.jar:BINDING` is complete; without a binding slf4j
# drops every log line, so add slf4j-simple (logs to stderr, i.e. our log file).
slf4j_binding() {
	local j
	for j in /usr/share/java/slf4j-simple.jar /usr/share/java/slf4j-simple-*.jar \
		/usr/share/java/slf4j-jdk14.jar /usr/share/java/slf4j-nop.jar; do
		[[ -f $j ]] && { echo "$j"; return 0; }
	done
	return 1
}

ensure_packages() {
	local pkgs=() k
	for k in "$@"; do
		case $k in
		postgres)
			pg_bindir >/dev/null || pkgs+=(postgresql)
			command -v pg_isready >/dev/null 2>&1 || pkgs+=(postgresql-client)
			;;
		mariadb)
			command -v mariadbd >/dev/null 2>&1 && command -v mariadb-install-db >/dev/null 2>&1 ||
				pkgs+=(mariadb-server)
			command -v mariadb-admin >/dev/null 2>&1 && command -v mariadb >/dev/null 2>&1 ||
				pkgs+=(mariadb-client)
			;;
		redis | rcluster)
			command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
			command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-tools)
			;;
		patroni)
			pg_bindir >/dev/null || pkgs+=(postgresql)
			command -v patroni >/dev/null 2>&1 || pkgs+=(patroni)
			;;
		zookeeper | zk3)
			{ zk_jar >/dev/null && command -v java >/dev/null 2>&1; } || pkgs+=(zookeeper)
			slf4j_binding >/dev/null || pkgs+=(libslf4j-java)
			;;
		etcd)
			command -v etcd >/dev/null 2>&1 || pkgs+=(etcd-server)
			command -v etcdctl >/dev/null 2>&1 || pkgs+=(etcd-client) # for humans and tests
			;;
		nats) ensure_nats_server ;;
		esac
	done
	command -v ss >/dev/null 2>&1 || pkgs+=(iproute2)
	command -v setsid >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1 || pkgs+=(util-linux)
	if ((${#pkgs[@]})); then
		# shellcheck disable=SC2207 # package names have no spaces
		pkgs=($(printf '%s\n' "${pkgs[@]}" | sort -u))
		apt_install "${pkgs[@]}"
	fi
}

# ---------------------------------------------------------------------------------------------
# State directory
# ---------------------------------------------------------------------------------------------

# Directory of an existing run (for stop/env/status/restart/kill): env var, else the pointer file.
find_dir() {
	if [[ -n ${FLASHORDER_SERVICES_DIR:-} ]]; then
		DIR=$FLASHORDER_SERVICES_DIR
	elif [[ -s $POINTER ]]; then
		DIR=$(cat "$POINTER")
	else
		DIR=""
	fi
	[[ -z $DIR ]] || DIR=$(cd "$DIR" 2>/dev/null && pwd) || DIR=""
	[[ -n $DIR && -f $DIR/$MARKER ]]
}

# Directory for start: env var (created if needed; must be empty or ours), else reuse the one the
# pointer names (so `start postgres; start redis` builds one set), else a fresh mktemp -d.
make_dir() {
	if [[ -n ${FLASHORDER_SERVICES_DIR:-} ]]; then
		mkdir -p "$FLASHORDER_SERVICES_DIR"
		DIR=$(cd "$FLASHORDER_SERVICES_DIR" && pwd)
		if [[ ! -f $DIR/$MARKER && -n $(ls -A "$DIR") ]]; then
			die "$DIR is not empty and not a services dir; refusing to use it (stop would delete it)"
		fi
	elif find_dir; then
		:
	else
		DIR=$(mktemp -d "${TMPDIR:-/tmp}/flashorder-services.XXXXXX")
		echo "$DIR" >"$POINTER"
	fi
	touch "$DIR/$MARKER"
	# Durability is baked into the configs at first start; keep one setting per state dir so a
	# later `start X`/`restart X` and the env file agree with what is actually running.
	if [[ -s $DIR/durable ]]; then DURABLE=$(cat "$DIR/durable"); else echo "$DURABLE" >"$DIR/durable"; fi
	# mktemp makes 0700; PostgreSQL runs as user postgres and must traverse into it.
	chmod 0755 "$DIR"
}

lock_dir() {
	exec 9>"$DIR/.lock"
	if command -v flock >/dev/null 2>&1; then flock 9; fi
}

# ---------------------------------------------------------------------------------------------
# Units. A unit is one server process: postgres mariadb redis zookeeper etcd zk3-1 zk3-2 zk3-3.
# Each has $DIR/UNIT/{port,pid,log,data/} plus its config file; restart reuses all of it.
# ---------------------------------------------------------------------------------------------

kind_of() { case $1 in zk3-[123]) echo zk ;; zookeeper) echo zk ;; patroni-[123]) echo patroni ;; nats-[123]) echo nats ;; redis-cluster-[123]) echo rcluster ;; *) echo "$1" ;; esac; }
udir() { echo "$DIR/$1"; }
uport() { cat "$DIR/$1/port" 2>/dev/null; }

# check_services NAME...: validate service names. Called in the main shell: a die inside the
# $(...) or <(...) that expand_units runs in would not stop the script.
check_services() {
	local s
	for s in "$@"; do
		case $s in
		postgres | mariadb | redis | zookeeper | etcd | zk3 | zk3-[123] | patroni | patroni-[123] | nats | nats-[123] | redis-cluster | redis-cluster-[123]) ;;
		patroni-primary | patroni-postmaster) [[ $CMD == kill ]] || die "'$s' is only for kill" ;;
		*) die "unknown service '$s' (want postgres mariadb redis zookeeper zk3 etcd patroni nats redis-cluster)" ;;
		esac
	done
}

# expand_units NAME...: (checked) service names -> unit names (zk3 is three units).
expand_units() {
	local s
	for s in "$@"; do
		case $s in
		zk3) printf "%s\n" zk3-1 zk3-2 zk3-3 ;;
		patroni) printf "%s\n" "${PATRONI_UNITS[@]}" ;;
		nats) printf "%s\n" nats-1 nats-2 nats-3 ;;
		redis-cluster) printf "%s\n" "${RCLUSTER_UNITS[@]}" ;;
		*) echo "$s" ;;
		esac
	done
}

# Units present in the state dir, in a stable order.
known_units() {
	local u
	for u in postgres mariadb redis zookeeper etcd zk3-1 zk3-2 zk3-3 patroni-1 patroni-2 patroni-3 nats-1 nats-2 nats-3 \
		redis-cluster-1 redis-cluster-2 redis-cluster-3; do
		[[ -f $DIR/$u/port ]] && echo "$u"
	done
	return 0
}

# unit_pid UNIT: print the pid if the unit's process is alive and really ours. The cmdline check
# guards against a stale pid file whose pid was reused by an unrelated process.
unit_pid() {
	local u=$1 pid cmd
	[[ -s $DIR/$u/pid ]] || return 1
	read -r pid <"$DIR/$u/pid" || return 1
	pid_alive "$pid" || return 1
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	if [[ $cmd == *"$DIR/"* ]]; then
		echo "$pid"
	elif [[ ($u == redis || $u == redis-cluster-*) && $cmd == *redis-server*":$(uport "$u")"* ]]; then
		echo "$pid" # redis rewrites its argv to "redis-server 127.0.0.1:PORT [cluster]"
	else
		return 1
	fi
}

# --- PostgreSQL ---------------------------------------------------------------------------------

prepare_postgres() {
	local d
	d=$(udir postgres)
	mkdir -p "$d"
	free_port >"$d/port"
	if ((EUID == 0)); then
		chown postgres:postgres "$d"
		as_pg test -w "$d" -a -x "$d" ||
			die "user postgres cannot write $d: every parent directory needs o+x (0755)"
	fi
	# Unix socket paths are limited to 107 bytes.
	((${#d} + 20 < 107)) || die "state dir path too long for a unix socket: $d"
}

init_postgres() {
	local d bin
	d=$(udir postgres)
	bin=$(pg_bindir)
	[[ -f $d/data/PG_VERSION ]] && return 0
	# --no-sync: the cluster is throw-away. trust auth covers local and 127.0.0.1 (user postgres).
	as_pg "$bin/initdb" -D "$d/data" -U postgres -A trust -E UTF8 --no-locale --no-sync >"$d/initdb.log" 2>&1 ||
		{ cat "$d/initdb.log"; return 1; }
	local fast=off
	((DURABLE)) && fast=on
	# Settings go into postgresql.conf (later lines win) so a restart comes back identically.
	cat >>"$d/data/postgresql.conf" <<EOF

# --- flashorder services.sh ---
listen_addresses = '127.0.0.1'
port = $(uport postgres)
unix_socket_directories = '$d'
max_connections = 300
# FLASHORDER_DURABLE=$DURABLE: off = fast throw-away test mode, on = real durability
fsync = $fast
synchronous_commit = $fast
full_page_writes = $fast
EOF
}

launch_postgres() {
	local d pid cmd lock
	d=$(udir postgres)
	# After a crash (kill) postmaster.pid and the socket's .s.PGSQL.PORT.lock stay behind, and a
	# killed postmaster can linger here as a zombie for seconds; PostgreSQL treats a zombie pid as
	# "another postmaster is running" and refuses to start. A lock whose pid is dead, a zombie or
	# not a postmaster on this data dir is stale. (The old shared memory segment is found and
	# cleaned up via the data dir's inode anyway.)
	for lock in "$d/data/postmaster.pid" "$d"/.s.PGSQL.*.lock; do
		[[ -f $lock ]] || continue
		read -r pid <"$lock" || pid=""
		cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || cmd=""
		if ! pid_alive "$pid" || [[ $cmd != *"$d/data"* ]]; then
			rm -f "$lock"
		fi
	done
	# The postmaster runs in the foreground under spawn (pid file = postmaster pid); stopping goes
	# through pg_ctl stop -m fast.
	spawn "$d/pid" "$d/log" "${AS_PG[@]}" "$(pg_bindir)/postgres" -D "$d/data"
}

ready_postgres() { pg_isready -q -t 2 -h 127.0.0.1 -p "$(uport postgres)" -U postgres -d postgres; }

stop_postgres() {
	local d
	d=$(udir postgres)
	if [[ -f $d/data/postmaster.pid ]]; then
		as_pg "$(pg_bindir)/pg_ctl" stop -D "$d/data" -m fast -w -t 30 >>"$d/log" 2>&1 || true
	fi
}

# --- Patroni: a 3-node PostgreSQL HA cluster (units patroni-1..3) ---------------------------------
# Each unit is one Patroni process (its pid file) managing one PostgreSQL; the unit's `port` is
# the REST API's, `pg_port` PostgreSQL's. Patroni keeps its leader key in the etcd of this state
# dir (started with it when missing). Always durable (fsync, synchronous_commit on) with
# synchronous replication: it exists to show that no acknowledged order is lost on failover.
# FLASHORDER_PATRONI_STRICT=1 at first start sets synchronous_mode_strict.

PATRONI_UNITS=(patroni-1 patroni-2 patroni-3)

# The system python that Debian's patroni package runs on (python3-etcd, psycopg2 live there).
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3

# patroni_api PORT METHOD PATH [JSON]: print the REST answer's body; the status code goes to fd 3
# when open. Exit 0 on any HTTP answer, 1 when the node does not answer within
# $PATRONI_API_TIMEOUT seconds (3).
patroni_api() {
	"$PYTHON" - "$@" <<'PY'
import os, sys, urllib.request, urllib.error
port, method, path = sys.argv[1:4]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path), data=body, method=method,
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=float(os.environ.get("PATRONI_API_TIMEOUT", "3"))) as r:
        code, out = r.status, r.read()
except urllib.error.HTTPError as e:
    code, out = e.code, e.read()
except Exception as e:
    sys.exit(1)
sys.stdout.write(out.decode(errors="replace"))
sys.stderr.write("%d\n" % code)
PY
}

# patroni_status PORT PATH: the HTTP status of GET PATH (000 when the node does not answer).
patroni_status() {
	local code
	code=$(patroni_api "$1" GET "$2" 2>&1 >/dev/null) || code=000
	echo "${code:-000}"
}

# patroni_members: "name role state lag" lines of the cluster as any live member sees it.
patroni_members() {
	local u out
	for u in "${PATRONI_UNITS[@]}"; do
		unit_pid "$u" >/dev/null || continue
		out=$(patroni_api "$(uport "$u")" GET /cluster 2>/dev/null) || continue
		"$PYTHON" -c '
import json, sys
for m in json.load(sys.stdin).get("members", []):
    print(m["name"], m.get("role", "?"), m.get("state", "?"), m.get("lag", 0) if m.get("role") != "leader" else 0)
' <<<"$out" 2>/dev/null && return 0
	done
	return 1
}

# patroni_role_unit ROLE: the unit whose member has ROLE (leader, sync_standby, replica).
patroni_role_unit() {
	local name role _
	while read -r name role _; do
		[[ $role == "$1" ]] && { echo "$name"; return 0; }
	done < <(patroni_members)
	return 1
}

# patroni_primary: the unit that answers GET /primary with 200 (what Patroni itself says).
patroni_primary() {
	local u
	for u in "${PATRONI_UNITS[@]}"; do
		[[ -f $DIR/$u/port ]] || continue
		[[ $(patroni_status "$(uport "$u")" /primary) == 200 ]] && { echo "$u"; return 0; }
	done
	return 1
}

# patroni_ready_cluster: a leader, a synchronous standby, and every member running/streaming.
patroni_ready_cluster() {
	local name role state _ leader=0 sync=0 n=0
	while read -r name role state _; do
		n=$((n + 1))
		[[ $state == running || $state == streaming ]] || return 1
		[[ $role == leader ]] && leader=1
		[[ $role == sync_standby ]] && sync=1
	done < <(patroni_members)
	((n == ${#PATRONI_UNITS[@]} && leader && sync))
}

# postmaster_pid UNIT: the pid of the unit's postmaster (first line of postmaster.pid), if alive.
postmaster_pid() {
	local f pid cmd
	f=$(udir "$1")/data/postmaster.pid
	[[ -s $f ]] || return 1
	read -r pid <"$f" || return 1
	pid_alive "$pid" || return 1
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmd == *"$(udir "$1")/data"* ]] || return 1
	echo "$pid"
}

prepare_patroni() {
	local u d etcd_port scope ports=() pgports=() n strict=false
	[[ ${FLASHORDER_PATRONI_STRICT:-0} == 1 ]] && strict=true
	etcd_port=$(uport etcd) || die "patroni needs etcd (start it first)"
	for n in 1 2 3; do
		ports[n]=$(free_port)
		pgports[n]=$(free_port)
	done
	scope="flashorder-${ports[1]}"
	for n in 1 2 3; do
		u=patroni-$n
		d=$(udir "$u")
		mkdir -p "$d"
		echo "${ports[n]}" >"$d/port"
		echo "${pgports[n]}" >"$d/pg_port"
		((${#d} + 20 < 107)) || die "state dir path too long for a unix socket: $d"
		cat >"$d/patroni.yml" <<EOF
# written by flashorder scripts/services.sh
scope: $scope
namespace: /flashorder/
name: $u
log:
  level: INFO
restapi:
  listen: 127.0.0.1:${ports[n]}
  connect_address: 127.0.0.1:${ports[n]}
etcd3:
  hosts: 127.0.0.1:$etcd_port
bootstrap:
  dcs:
    # Failover timing (measured here: a node crash ~10 s, a killed postmaster 2-3 s, a switchover
    # ~1.5 s). Patroni needs ttl >= loop_wait + 2 * retry_timeout.
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    # 0: a crashed primary's postmaster is not restarted in place; the standby takes over.
    primary_start_timeout: 0
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: $strict
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        # A crashed primary rejoins from the WAL the new primary still has: under
        # heavy load the new leader's slot for it starts at the promotion, and the
        # segments before went in the next checkpoint ("requested WAL segment ...
        # has already been removed"), leaving the node "starting up" for good.
        wal_keep_size: 1GB
        max_replication_slots: 10
        max_connections: 300
        fsync: "on"
        synchronous_commit: "on"
        full_page_writes: "on"
  initdb:
    - encoding: UTF8
    - locale: C
  pg_hba:
    - local all all trust
    - host replication all 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:${pgports[n]}
  connect_address: 127.0.0.1:${pgports[n]}
  data_dir: $d/data
  bin_dir: $(pg_bindir)
  pgpass: $d/pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: replicator
    rewind:
      username: postgres
  parameters:
    unix_socket_directories: "$d"
watchdog:
  mode: "off"
EOF
		if ((EUID == 0)); then
			chown -R postgres:postgres "$d"
			chmod 0755 "$d"
		fi
	done
}

init_patroni() { :; }

launch_patroni() {
	local u=$1 d lock pid
	d=$(udir "$u")
	# A killed postmaster leaves postmaster.pid behind; Patroni copes, but a stale socket lock
	# whose pid is gone would make PostgreSQL refuse the port.
	for lock in "$d"/.s.PGSQL.*.lock; do
		[[ -f $lock ]] || continue
		read -r pid <"$lock" || pid=""
		pid_alive "$pid" || rm -f "$lock"
	done
	# A node that starts again after a crash starts clean, as after a reboot.
	[[ -n $(postmaster_pid "$u") ]] || kill_stragglers "$u"
	spawn "$d/pid" "$d/log" "${AS_PG[@]}" env HOME="$d" patroni "$d/patroni.yml"
}

# A member is ready when its REST API says its PostgreSQL runs (/health is 200).
ready_patroni() { [[ $(patroni_status "$(uport "$1")" /health) == 200 ]]; }

stop_patroni() { kill -TERM "$2" 2>/dev/null || true; }

# after_stop_patroni UNIT: a postmaster left without its Patroni (killed) is stopped too.
after_stop_patroni() {
	local pid pids
	pid=$(postmaster_pid "$1") || return 0
	kill -TERM "$pid" 2>/dev/null || true
	wait_dead 20 "$pid" && return 0
	# shellcheck disable=SC2207
	pids=("$pid" $(child_pids "$pid"))
	kill -KILL "${pids[@]}" 2>/dev/null || true
	wait_dead 10 "${pids[@]}" || true
}

# data_dir_pids UNIT: every process whose working directory is the unit's data dir: the
# postmaster and all its backends, also those orphaned by a killed postmaster.
data_dir_pids() {
	local data p
	data=$(udir "$1")/data
	# One find, not a readlink per process: this runs while the node is frozen (SIGSTOP).
	for p in $(find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$data" 2>/dev/null); do
		p=${p#/proc/}
		echo "${p%/cwd}"
	done
	return 0
}

# kill_stragglers UNIT: SIGKILL what is left of the unit's PostgreSQL (backends of a killed
# postmaster still attached to its shared memory would keep a new postmaster from starting).
kill_stragglers() {
	local pids=()
	mapfile -t pids < <(data_dir_pids "$1")
	((${#pids[@]})) || return 0
	kill -KILL "${pids[@]}" 2>/dev/null || true
	wait_dead 30 "${pids[@]}" || die "$1: PostgreSQL processes survived SIGKILL"
}

# kill_patroni_node UNIT: a node crash: SIGKILL to Patroni, the postmaster and its backends at once.
# Patroni and the postmaster are stopped (SIGSTOP) first, so that no backend is forked between
# listing the processes and killing them (under load the postmaster forks all the time).
kill_patroni_node() {
	local u=$1 pids=() p pm
	p=$(unit_pid "$u") && pids+=("$p")
	pm=$(postmaster_pid "$u") && pids+=("$pm")
	((${#pids[@]})) || return 0
	kill -STOP "${pids[@]}" 2>/dev/null || true
	# shellcheck disable=SC2207
	pids+=($(data_dir_pids "$u")) # the backends: their working directory is the data dir
	kill -KILL "${pids[@]}" 2>/dev/null || true
	wait_dead 30 "${pids[@]}" || die "$u survived SIGKILL"
	kill_stragglers "$u"
	log "killed $u (Patroni and PostgreSQL)"
}

# kill_patroni_postmaster UNIT: SIGKILL only the postmaster; Patroni lives on.
kill_patroni_postmaster() {
	local pm
	pm=$(postmaster_pid "$1") || die "$1 has no running postmaster"
	kill -KILL "$pm"
	wait_dead 30 "$pm" || die "postmaster of $1 survived SIGKILL"
	log "killed the postmaster of $1 (pid $pm)"
}

# wait_patroni_cluster SECONDS: wait for a leader, a sync standby and every member streaming.
wait_patroni_cluster() {
	local t0 deadline
	t0=$(now_us)
	deadline=$((t0 + $1 * 1000000))
	until patroni_ready_cluster; do
		if (($(now_us) > deadline)); then
			patroni_members >&2 || true
			return 1
		fi
		sleep 0.2
	done
	log "patroni cluster ready (leader $(patroni_role_unit leader), sync standby $(patroni_role_unit sync_standby)) in $(fmt_secs $(($(now_us) - t0)))"
}

# cmd_switchover: move the leader to the synchronous standby through the REST API.
cmd_switchover() {
	local leader cand out code
	find_dir || die "no running services dir"
	leader=$(patroni_primary) || die "no patroni primary"
	cand=$(patroni_role_unit sync_standby) || die "no synchronous standby to switch over to"
	# Patroni answers once the switchover is done (seconds).
	code=$(PATRONI_API_TIMEOUT=$TIMEOUT patroni_api "$(uport "$leader")" POST /switchover "{\"leader\":\"$leader\",\"candidate\":\"$cand\"}" 2>&1 >"$DIR/switchover.out") || code=000
	out=$(cat "$DIR/switchover.out" 2>/dev/null)
	[[ $code == 200 ]] || die "switchover $leader -> $cand: HTTP $code $out"
	log "switchover $leader -> $cand: $out"
	# Return once the new primary says so (the old one then rejoins as a replica on its own).
	local deadline=$(($(now_us) + TIMEOUT * 1000000))
	until [[ $(patroni_status "$(uport "$cand")" /primary) == 200 ]]; do
		(($(now_us) < deadline)) || die "$cand is not primary ${TIMEOUT}s after the switchover"
		sleep 0.1
	done
}

# --- MariaDB ------------------------------------------------------------------------------------

prepare_mariadb() {
	local d
	d=$(udir mariadb)
	# Private tmpdir: concurrent instances sharing /tmp collide on internal temp table names
	# (seen: two parallel mariadb-install-db runs, one failed with "Error on delete of /tmp/#sql-temptable-...").
	mkdir -p "$d/tmp"
	free_port >"$d/port"
	((${#d} + 12 < 107)) || die "state dir path too long for a unix socket: $d"
	local flush=2 sync=0 dblwr=0
	((DURABLE)) && flush=1 sync=1 dblwr=1
	# A private defaults file (mariadbd --defaults-file reads nothing else, e.g. not /etc/mysql).
	cat >"$d/my.cnf" <<EOF
[mysqld]
datadir=$d/data
socket=$d/mysqld.sock
pid-file=$d/mariadbd.pid
tmpdir=$d/tmp
port=$(uport mariadb)
bind-address=127.0.0.1
log-error=$d/log
$( ((EUID == 0)) && echo user=root)
# No DNS lookups for 127.0.0.1 (root@127.0.0.1 exists, created by mariadb-install-db).
skip-name-resolve
skip-log-bin
max-connections=1000
# Fault tests make many failed connects; don't let the host get blocked.
max-connect-errors=1000000
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
innodb-log-file-size=16M
# FLASHORDER_DURABLE=$DURABLE: 2/0/0 = fast test mode, 1/1/1 = durable
innodb-flush-log-at-trx-commit=$flush
sync-binlog=$sync
innodb-doublewrite=$dblwr
EOF
}

init_mariadb() {
	local d asroot=()
	d=$(udir mariadb)
	[[ -d $d/data/mysql ]] && return 0
	((EUID == 0)) && asroot=(--user=root)
	# normal root auth = root without password (also root@127.0.0.1), as Go clients need.
	mariadb-install-db --no-defaults --datadir="$d/data" --auth-root-authentication-method=normal \
		--skip-test-db --skip-name-resolve --innodb-log-file-size=16M --tmpdir="$d/tmp" \
		"${asroot[@]}" >"$d/install.log" 2>&1 ||
		{ cat "$d/install.log"; return 1; }
}

launch_mariadb() {
	local d
	d=$(udir mariadb)
	spawn "$d/pid" "$d/log" mariadbd --defaults-file="$d/my.cnf"
}

mariadb_client() {
	local bin=$1
	shift
	"$bin" --no-defaults --protocol=tcp -h 127.0.0.1 -P "$(uport mariadb)" -u root --connect-timeout=2 "$@"
}

ready_mariadb() { mariadb_client mariadb-admin ping >/dev/null 2>&1; }

# `ping` also succeeds when access is denied, so prove root over TCP really works.
verify_mariadb() { mariadb_client mariadb -N -e 'SELECT 1' >/dev/null; }

stop_mariadb() { mariadb_client mariadb-admin shutdown >/dev/null 2>&1 || true; }

# --- Redis --------------------------------------------------------------------------------------

# redis_conf UNIT PORT [LINE...]: write the unit's redis.conf (extra LINEs at the end).
redis_conf() {
	local d aof=no
	d=$(udir "$1")
	mkdir -p "$d/data"
	echo "$2" >"$d/port"
	((DURABLE)) && aof=yes
	{
		cat <<EOF
port $2
bind 127.0.0.1
daemonize no
dir $d/data
logfile ""
# Fast mode: no persistence at all. FLASHORDER_DURABLE=1: AOF fsynced every second.
save ""
appendonly $aof
appendfsync everysec
EOF
		(($# < 3)) || printf '%s\n' "${@:3}"
	} >"$d/redis.conf"
}

prepare_redis() { redis_conf redis "$(free_port)"; }

# The functions of one Redis unit; the cluster members (kind rcluster) use them too.
init_redis() { :; }
launch_redis() { spawn "$(udir "$1")/pid" "$(udir "$1")/log" redis-server "$(udir "$1")/redis.conf"; }
ready_redis() { [[ $(redis-cli -h 127.0.0.1 -p "$(uport "$1")" ping 2>/dev/null) == PONG ]]; }
stop_redis() { redis-cli -h 127.0.0.1 -p "$(uport "$1")" shutdown nosave >/dev/null 2>&1 || true; }

# --- Redis Cluster: 3 masters without replicas (units redis-cluster-1..3) -------------------------
# Each unit is one redis-server in cluster mode with its own client port (`port`) and cluster bus
# port (`bus_port`; set with cluster-port, since the default, port + 10000, is nobody's claim).
# The cluster is formed once (`redis-cli --cluster create`, marker file `formed` in
# redis-cluster-1); a member that starts again rejoins from its nodes.conf.

RCLUSTER_UNITS=(redis-cluster-1 redis-cluster-2 redis-cluster-3)

prepare_rcluster() {
	local u port bus
	for u in "${RCLUSTER_UNITS[@]}"; do
		port=$(free_port)
		bus=$(free_port)
		while [[ $bus == "$port" ]]; do bus=$(free_port); done
		redis_conf "$u" "$port" "cluster-enabled yes" \
			"cluster-config-file $(udir "$u")/data/nodes.conf" \
			"cluster-port $bus" "cluster-node-timeout 5000"
		echo "$bus" >"$(udir "$u")/bus_port"
	done
}

init_rcluster() { :; }
launch_rcluster() { launch_redis "$1"; }
ready_rcluster() { ready_redis "$1"; }
stop_rcluster() { stop_redis "$1"; }

# rcluster_ok UNIT: the member says cluster_state:ok and knows all three masters.
rcluster_ok() {
	local info
	info=$(redis-cli -h 127.0.0.1 -p "$(uport "$1")" cluster info 2>/dev/null | tr -d '\r') || return 1
	[[ $info == *cluster_state:ok* && $info == *cluster_known_nodes:3* ]]
}

# form_rcluster SECONDS: join the three members into one cluster (once), then wait until every
# running member says cluster_state:ok.
form_rcluster() {
	local u t0 deadline out all
	t0=$(now_us)
	deadline=$((t0 + $1 * 1000000))
	if [[ ! -f $DIR/redis-cluster-1/formed ]]; then
		for u in "${RCLUSTER_UNITS[@]}"; do
			unit_pid "$u" >/dev/null || { log "redis-cluster: $u is not running; cannot form the cluster"; return 1; }
		done
		if ! out=$(redis-cli --cluster create "127.0.0.1:$(uport redis-cluster-1)" \
			"127.0.0.1:$(uport redis-cluster-2)" "127.0.0.1:$(uport redis-cluster-3)" \
			--cluster-replicas 0 --cluster-yes 2>&1); then
			log "redis-cluster: redis-cli --cluster create failed:"
			printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /' >&2
			return 1
		fi
		touch "$DIR/redis-cluster-1/formed"
	fi
	while :; do
		all=1
		for u in "${RCLUSTER_UNITS[@]}"; do
			unit_pid "$u" >/dev/null || continue
			rcluster_ok "$u" || all=0
		done
		((all)) && break
		if (($(now_us) > deadline)); then
			log "redis-cluster: not cluster_state:ok on every member after ${1}s"
			return 1
		fi
		sleep 0.1
	done
	log "redis-cluster ready (3 masters, cluster_state:ok) in $(fmt_secs $(($(now_us) - t0)))"
}

# --- ZooKeeper (single node "zookeeper" and ensemble members "zk3-N") ----------------------------

# zk_conf UNIT CLIENTPORT [server lines...]: write zoo.cfg.
zk_conf() {
	local u=$1 port=$2 d sync=no
	shift 2
	d=$(udir "$u")
	((DURABLE)) && sync=yes
	mkdir -p "$d/data"
	echo "$port" >"$d/port"
	{
		cat <<EOF
# tickTime=500: short minimum session timeout (1 s) and fast leader election (~1 s) for fault tests.
tickTime=500
initLimit=20
syncLimit=10
minSessionTimeout=1000
maxSessionTimeout=60000
dataDir=$d/data
clientPort=$port
clientPortAddress=127.0.0.1
# The AdminServer would take port 8080 on all interfaces.
admin.enableServer=false
4lw.commands.whitelist=*
# Default is 60 connections per client IP; every test client comes from 127.0.0.1.
maxClientCnxns=0
# FLASHORDER_DURABLE=$DURABLE: no fsync of the transaction log in fast test mode.
forceSync=$sync
EOF
		printf '%s\n' "$@"
	} >"$d/zoo.cfg"
}

prepare_zookeeper() {
	local port
	port=$(free_port)
	zk_conf zookeeper "$port"
}

# The ensemble needs all nine ports before any member's config can be written.
prepare_zk3() {
	local n quorum election servers=() ports=()
	for n in 1 2 3; do
		ports[n]=$(free_port)
		quorum=$(free_port)
		election=$(free_port)
		servers+=("server.$n=127.0.0.1:$quorum:$election")
	done
	for n in 1 2 3; do
		zk_conf "zk3-$n" "${ports[n]}" "${servers[@]}"
		echo "$n" >"$(udir "zk3-$n")/data/myid"
	done
}

init_zk() { :; }

launch_zk() {
	local u=$1 d cp
	d=$(udir "$u")
	local jar binding
	jar=$(zk_jar) || die "zookeeper.jar not found (package libzookeeper-java)"
	binding=$(slf4j_binding) || die "no slf4j binding jar found (package libslf4j-java)"
	cp="$jar:$binding"
	# Debian's zkServer.sh logs to /var/log/zookeeper and reads /etc/zookeeper; run the main class
	# directly instead. Small heap + serial GC: several JVMs share 2 cores here.
	local main=org.apache.zookeeper.server.ZooKeeperServerMain
	[[ $u == zk3-* ]] && main=org.apache.zookeeper.server.quorum.QuorumPeerMain
	spawn "$d/pid" "$d/log" java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:-UsePerfData \
		-Djava.net.preferIPv4Stack=true \
		-Dorg.slf4j.simpleLogger.showDateTime=true \
		-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
		-cp "$cp" "$main" "$d/zoo.cfg"
}

# four_letter PORT WORD: a ZooKeeper four-letter-word command over bash's /dev/tcp.
four_letter() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf %s "$1" >&3 && cat <&3' "$1" "$2" 2>/dev/null
}

zk_mode() { four_letter "$(uport "$1")" srvr | sed -n "s/^Mode: //p" || true; }

ready_zk() {
	local mode
	mode=$(zk_mode "$1")
	case $1 in
	zookeeper) [[ $mode == standalone ]] ;;
	*) [[ $mode == leader || $mode == follower ]] ;;
	esac
}

# SIGTERM is the normal shutdown for ZooKeeper and etcd.
stop_zk() { kill -TERM "$2" 2>/dev/null || true; }

# --- etcd ---------------------------------------------------------------------------------------

prepare_etcd() {
	local d port peer
	d=$(udir etcd)
	mkdir -p "$d"
	port=$(free_port)
	peer=$(free_port)
	# Never one port for both (seen once: etcd refused to start, "address already in use").
	while [[ $peer == "$port" ]]; do peer=$(free_port); done
	echo "$port" >"$d/port"
	echo "$peer" >"$d/peer_port"
	# One flag per line; on restart etcd ignores the --initial-* flags (the data dir has them).
	cat >"$d/etcd.args" <<EOF
--name=n1
--data-dir=$d/data
--listen-client-urls=http://127.0.0.1:$port
--advertise-client-urls=http://127.0.0.1:$port
--listen-peer-urls=http://127.0.0.1:$peer
--initial-advertise-peer-urls=http://127.0.0.1:$peer
--initial-cluster=n1=http://127.0.0.1:$peer
--initial-cluster-state=new
--initial-cluster-token=flashorder-$port
--logger=zap
--log-outputs=stderr
EOF
}

init_etcd() { :; }

launch_etcd() {
	local d args
	d=$(udir etcd)
	mapfile -t args <"$d/etcd.args"
	# etcd also reads ETCD_* variables and refuses flags that conflict with them.
	local unset_env=() v
	for v in $(compgen -e | grep '^ETCD_' || true); do unset_env+=(-u "$v"); done
	spawn "$d/pid" "$d/log" env "${unset_env[@]}" etcd "${args[@]}"
}

# http_get PORT PATH: minimal HTTP/1.0 GET over /dev/tcp (no curl needed).
http_get() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" &&
		printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3 && cat <&3' "$1" "$2" 2>/dev/null
}

ready_etcd() { http_get "$(uport etcd)" /health | grep -q '"health": *"true"'; }
stop_etcd() { kill -TERM "$2" 2>/dev/null || true; }

# --- NATS: a 3-node JetStream cluster (units nats-1..3) --------------------------------------
# Each unit is one nats-server process with its own config, client port (`port`), cluster (route)
# port and monitoring port; JetStream stores in the unit's data dir with sync_interval: always
# (fsync before every acknowledgement: with the default interval a crash loses acknowledged
# writes, per Jepsen's NATS 2.12.1 analysis). Always durable, whatever FLASHORDER_DURABLE says.

nats_server() { echo "$BIN_DIR/nats-server-$NATS_VERSION/nats-server"; }

# ensure_nats_server: build nats-server $NATS_VERSION from its Go module once (go install into
# a temporary GOBIN, then renamed into place); later starts reuse the binary. A lock keeps
# concurrent starts from building it twice.
ensure_nats_server() {
	local bin dir tmp t0 rc=0
	bin=$(nats_server)
	[[ -x $bin ]] && return 0
	command -v go >/dev/null 2>&1 || die "nats needs go on PATH to build nats-server $NATS_VERSION"
	dir=$(dirname "$bin")
	mkdir -p "$dir"
	exec 8>"$dir.lock"
	command -v flock >/dev/null 2>&1 && flock 8
	if [[ ! -x $bin ]]; then
		tmp=$(mktemp -d "$dir.build.XXXXXX")
		t0=$(now_us)
		log "building nats-server $NATS_VERSION from its Go module (minutes on a cold cache; once)"
		GOBIN=$tmp GOFLAGS=-buildvcs=false go install "github.com/nats-io/nats-server/v2@$NATS_VERSION" >"$tmp/build.log" 2>&1 || rc=$?
		if ((rc != 0)); then
			cat "$tmp/build.log" >&2
			rm -rf "$tmp"
			die "go install nats-server $NATS_VERSION failed"
		fi
		mv "$tmp/nats-server" "$bin"
		rm -rf "$tmp"
		log "built $bin in $(fmt_secs $(($(now_us) - t0)))"
	fi
	exec 8>&-
}

prepare_nats() {
	local n d ports=() routes=() mons=() routelist="" name
	for n in 1 2 3; do
		ports[n]=$(free_port)
		routes[n]=$(free_port)
		mons[n]=$(free_port)
		routelist+="${routelist:+, }nats-route://127.0.0.1:${routes[n]}"
	done
	name="flashorder-${ports[1]}"
	for n in 1 2 3; do
		d=$(udir "nats-$n")
		mkdir -p "$d/data"
		echo "${ports[n]}" >"$d/port"
		echo "${routes[n]}" >"$d/cluster_port"
		echo "${mons[n]}" >"$d/monitor_port"
		cat >"$d/nats.conf" <<EOF
# written by flashorder scripts/services.sh
server_name: nats-$n
listen: 127.0.0.1:${ports[n]}
http: 127.0.0.1:${mons[n]}
jetstream {
  store_dir: "$d/data"
  # fsync every write before it is acknowledged (the default, 2 min, loses acknowledged
  # writes on a crash).
  sync_interval: always
  max_memory_store: 64MB
  max_file_store: 2GB
}
cluster {
  name: $name
  listen: 127.0.0.1:${routes[n]}
  routes: [ $routelist ]
}
EOF
	done
}

init_nats() { :; }
launch_nats() { spawn "$(udir "$1")/pid" "$(udir "$1")/log" "$(nats_server)" -c "$(udir "$1")/nats.conf"; }
# Ready when the monitoring endpoint's healthz (JetStream included: the meta group has a leader
# and this server caught up) says ok.
ready_nats() { http_get "$(cat "$(udir "$1")/monitor_port")" /healthz | grep -q '"status": *"ok"'; }
stop_nats() { kill -TERM "$2" 2>/dev/null || true; }


# ---------------------------------------------------------------------------------------------
# Generic unit operations
# ---------------------------------------------------------------------------------------------

# stop_unit UNIT: graceful stop via the service's own tool, then SIGTERM, then SIGKILL.
stop_unit() {
	local u=$1 pid k
	k=$(kind_of "$u")
	pid=$(unit_pid "$u") || { [[ $k != patroni ]] || after_stop_patroni "$u"; return 0; }
	"stop_$k" "$u" "$pid"
	if wait_dead 30 "$pid"; then
		[[ $k != patroni ]] || after_stop_patroni "$u"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	wait_dead 30 "$pid" && return 0
	log "$u (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
	kill_unit "$u"
}

# listens_ours UNIT: the unit's port is bound by the unit's own process. Without this a restart
# could "succeed" because some other server grabbed the port meanwhile and answers the ping.
# Skipped when ss is missing (the port was free when picked, so this only matters on restart).
listens_ours() {
	local pid
	pid=$(unit_pid "$1") || return 1
	command -v ss >/dev/null 2>&1 || return 0
	[[ $(ss -Hltnp "sport = :$(uport "$1")" 2>/dev/null) == *"pid=$pid,"* ]]
}

# kill_unit UNIT: SIGKILL the process and its children (a crash). PostgreSQL backends are killed
# too, or a restart would find the old shared memory still attached and refuse to start.
kill_unit() {
	local u=$1 pid pids
	pid=$(unit_pid "$u") || return 0
	# shellcheck disable=SC2207
	pids=("$pid" $(child_pids "$pid"))
	kill -KILL "${pids[@]}" 2>/dev/null || true
	wait_dead 30 "${pids[@]}" || die "$u (pid $pid) survived SIGKILL"
}

# emit NAME VALUE...: export lines, single-quoted so that both `. env` and humans read them plainly.
emit() {
	while (($# >= 2)); do
		printf "export %s='%s'\n" "$1" "${2//\'/\'\\\'\'}"
		shift 2
	done
}

write_env() {
	local f=$DIR/env.tmp u up d
	{
		echo "# written by $SELF; source with: set -a; . $DIR/env; set +a"
		emit FLASHORDER_SERVICES_DIR "$DIR" FLASHORDER_SERVICES_SCRIPT "$SELF" \
			FLASHORDER_DURABLE "$DURABLE"
		for u in $(known_units); do
			d=$(udir "$u")
			up=$(echo "$u" | tr 'a-z-' 'A-Z_')
			case $u in
			postgres) emit FLASHORDER_TEST_POSTGRES_URL \
				"postgres://postgres@127.0.0.1:$(uport "$u")/postgres?sslmode=disable" ;;
			mariadb) emit FLASHORDER_TEST_MYSQL_URL \
				"mysql://root@127.0.0.1:$(uport "$u")/mysql" ;;
			redis) emit FLASHORDER_TEST_REDIS_URL "redis://127.0.0.1:$(uport "$u")/0" ;;
			zookeeper) emit FLASHORDER_TEST_ZK_ADDRS "127.0.0.1:$(uport "$u")" ;;
			etcd)
				emit FLASHORDER_TEST_ETCD_ENDPOINTS "127.0.0.1:$(uport "$u")" \
					FLASHORDER_ETCD_PEER_PORT "$(cat "$d/peer_port")"
				;;
			patroni-1)
				local hosts="" apis="" m
				for m in "${PATRONI_UNITS[@]}"; do
					hosts+="${hosts:+,}127.0.0.1:$(cat "$DIR/$m/pg_port")"
					apis+="${apis:+,}http://127.0.0.1:$(uport "$m")"
				done
				emit FLASHORDER_TEST_PATRONI_URL \
					"postgres://postgres@$hosts/postgres?sslmode=disable&target_session_attrs=read-write&connect_timeout=2" \
					FLASHORDER_TEST_PATRONI_API "$apis"
				;;
			nats-1)
				emit FLASHORDER_TEST_NATS \
					"nats://127.0.0.1:$(uport nats-1),127.0.0.1:$(uport nats-2),127.0.0.1:$(uport nats-3)"
				;;
			redis-cluster-1)
				emit FLASHORDER_TEST_REDIS_CLUSTER \
					"127.0.0.1:$(uport redis-cluster-1),127.0.0.1:$(uport redis-cluster-2),127.0.0.1:$(uport redis-cluster-3)"
				;;
			zk3-1)
				emit FLASHORDER_TEST_ZK3_ADDRS \
					"127.0.0.1:$(uport zk3-1),127.0.0.1:$(uport zk3-2),127.0.0.1:$(uport zk3-3)"
				;;
			esac
			# Per-unit handles for fault tests: kill $(cat PIDFILE), then `services.sh restart UNIT`.
			emit "FLASHORDER_${up}_PORT" "$(uport "$u")" \
				"FLASHORDER_${up}_PIDFILE" "$d/pid" \
				"FLASHORDER_${up}_DATA" "$d/data" \
				"FLASHORDER_${up}_LOG" "$d/log"
			[[ $u != patroni-* ]] || emit "FLASHORDER_${up}_PG_PORT" "$(cat "$d/pg_port")"
		done
	} >"$f"
	mv "$f" "$DIR/env"
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

cmd_start() {
	local services=("$@") units=() u k kinds=()
	((${#services[@]})) || services=("${DEFAULT_SERVICES[@]}")
	# Patroni needs its etcd up first: start everything else (etcd included), then the members.
	local others=() pat=()
	for u in "${services[@]}"; do
		case $u in patroni | patroni-[123]) pat+=("$u") ;; *) others+=("$u") ;; esac
	done
	if ((${#pat[@]} && ${#others[@]})) || { ((${#pat[@]})) && ! { find_dir && unit_pid etcd >/dev/null; }; }; then
		[[ " ${others[*]} " == *" etcd "* ]] || others+=(etcd)
		cmd_start "${others[@]}"
		cmd_start "${pat[@]}"
		return
	fi
	mapfile -t units < <(expand_units "${services[@]}")
	for u in "${units[@]}"; do
		k=$(kind_of "$u")
		[[ $u == zk3-* ]] && k=zk3
		[[ $k == zk ]] && k=zookeeper
		kinds+=("$k")
	done
	ensure_packages "${kinds[@]}"
	make_dir
	lock_dir

	# 1. Ports and configs (fast, sequential: keeps port claiming simple).
	local todo=()
	for u in "${units[@]}"; do
		if unit_pid "$u" >/dev/null; then
			log "$u already running on 127.0.0.1:$(uport "$u")"
			continue
		fi
		if [[ ! -f $DIR/$u/port ]]; then
			case $u in
			zk3-*) [[ -f $DIR/zk3-1/port ]] || prepare_zk3 ;;
			patroni-*) [[ -f $DIR/patroni-1/port ]] || prepare_patroni ;;
			nats-*) [[ -f $DIR/nats-1/port ]] || prepare_nats ;;
			redis-cluster-*) [[ -f $DIR/redis-cluster-1/port ]] || prepare_rcluster ;;
			*) "prepare_$u" ;;
			esac
		fi
		todo+=("$u")
	done
	((${#todo[@]})) || { write_env; return 0; }

	# 2. Init + launch every unit in the background, so initdb, mariadb-install-db and the JVMs
	#    overlap; each records its exit status in start.rc.
	declare -A t0
	for u in "${todo[@]}"; do
		k=$(kind_of "$u")
		rm -f "$DIR/$u/start.rc"
		t0[$u]=$(now_us)
		(
			# Inner subshell: even a `die` in init/launch ends up as a status in start.rc.
			set +e
			("init_$k" "$u" && "launch_$k" "$u") >"$DIR/$u/start.log" 2>&1
			echo $? >"$DIR/$u/start.rc"
		) 9>&- &
	done

	# 3. Poll all pending units round-robin so each one's ready time is measured fairly.
	local deadline=$(($(now_us) + TIMEOUT * 1000000)) pending=("${todo[@]}") still rc failed=0
	while ((${#pending[@]})); do
		still=()
		for u in "${pending[@]}"; do
			k=$(kind_of "$u")
			rc=$(cat "$DIR/$u/start.rc" 2>/dev/null || true)
			if [[ -z $rc ]]; then
				still+=("$u")
			elif ((rc != 0)); then
				log "$u failed to initialise/launch (exit $rc):"
				{ tail_log "$DIR/$u/start.log"; tail_log "$DIR/$u/log"; } >&2
				failed=1
			elif listens_ours "$u" && "ready_$k" "$u"; then
				log "$u ready on 127.0.0.1:$(uport "$u") in $(fmt_secs $(($(now_us) - ${t0[$u]})))"
			elif [[ -s $DIR/$u/pid ]] && ! pid_alive "$(<"$DIR/$u/pid")"; then
				# Gone. (Alive but not unit_pid's yet, e.g. its
				# /proc/PID/cmdline read empty in the middle of its exec, a
				# window a loaded machine widens: it is polled again.)
				log "$u exited during startup:"
				tail_log "$DIR/$u/log" >&2
				failed=1
			else
				still+=("$u")
			fi
		done
		pending=("${still[@]}")
		((${#pending[@]})) || break
		if (($(now_us) > deadline)); then
			for u in "${pending[@]}"; do
				log "$u not ready after ${TIMEOUT}s:"
				tail_log "$DIR/$u/log" >&2
			done
			failed=1
			break
		fi
		sleep 0.05
	done
	wait # the launcher subshells
	if [[ " ${todo[*]} " == *" mariadb "* ]] && ((!failed)); then
		verify_mariadb || { log "mariadb: root over TCP without password does not work"; failed=1; }
	fi
	if [[ " ${todo[*]} " == *" patroni-"* ]] && ((!failed)); then
		wait_patroni_cluster "$TIMEOUT" || { log "patroni: no leader with a synchronous standby after ${TIMEOUT}s"; failed=1; }
	fi
	if [[ " ${todo[*]} " == *" redis-cluster-"* ]] && ((!failed)); then
		form_rcluster "$TIMEOUT" || failed=1
	fi
	write_env
	((!failed)) || die "some services failed to start; state dir $DIR (run '$SELF stop' to clean up)"
}

cmd_stop() {
	if ! find_dir; then
		# Nothing (left) to stop. Clean a leftover empty dir handed to us via the env var.
		[[ -n ${FLASHORDER_SERVICES_DIR:-} && -d $FLASHORDER_SERVICES_DIR ]] &&
			rmdir "$FLASHORDER_SERVICES_DIR" 2>/dev/null
		return 0
	fi
	lock_dir
	local units=() u pids=()
	if (($#)); then
		mapfile -t units < <(expand_units "$@")
	else
		mapfile -t units < <(known_units)
	fi
	# Patroni members first (each stops its PostgreSQL and needs etcd meanwhile), then the rest in
	# parallel: each waits for its own process to be gone.
	local first=()
	for u in "${units[@]}"; do [[ $u != patroni-* ]] || first+=("$u"); done
	if ((${#first[@]} && ${#first[@]} < ${#units[@]})); then
		for u in "${first[@]}"; do stop_unit "$u" 9>&- & pids+=($!); done
		for u in "${pids[@]}"; do wait "$u" || true; done
		pids=()
		mapfile -t units < <(printf '%s\n' "${units[@]}" | grep -v '^patroni-')
	fi
	for u in "${units[@]}"; do
		stop_unit "$u" 9>&- &
		pids+=($!)
	done
	local rc=0 p
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	(($#)) && return $rc

	# Full stop: make sure nothing of ours survives, then delete the state dir.
	for u in $(known_units); do
		unit_pid "$u" >/dev/null && { log "$u still running"; rc=1; }
		[[ $u != patroni-* ]] || ! postmaster_pid "$u" >/dev/null || { log "$u's postmaster still running"; rc=1; }
	done
	((rc == 0)) || die "not removing $DIR: some services still run"
	release_ports "$DIR"
	[[ -s $POINTER && $(cat "$POINTER") == "$DIR" ]] && rm -f "$POINTER"
	exec 9>&-
	rm -rf "$DIR"
	log "stopped; removed $DIR"
}

cmd_restart() {
	(($#)) || die "usage: $0 restart SERVICE..."
	find_dir || die "no running services dir (start first)"
	local units=() u
	mapfile -t units < <(expand_units "$@")
	for u in "${units[@]}"; do
		[[ -f $DIR/$u/port ]] || die "$u was never started in $DIR"
	done
	# Patroni members that run are left alone: `restart patroni` brings back those that are down,
	# and they rejoin as replicas.
	local down=() rest=()
	for u in "$@"; do
		case $u in
		patroni | patroni-[123]) down+=("$u") ;;
		*) rest+=("$u") ;;
		esac
	done
	if ((${#down[@]})); then
		((${#rest[@]} == 0)) || die "restart patroni on its own"
		exec 9>&-
		FLASHORDER_SERVICES_DIR=$DIR cmd_start "${down[@]}"
		return
	fi
	# Stop (if running) without deleting anything, then start again: same port, same data.
	cmd_stop "$@"
	exec 9>&-
	FLASHORDER_SERVICES_DIR=$DIR cmd_start "$@"
}

cmd_kill() {
	(($#)) || die "usage: $0 kill SERVICE..."
	find_dir || die "no running services dir"
	local u p
	for u in $(expand_units "$@"); do
		case $u in
		patroni-primary | patroni-postmaster)
			p=$(patroni_primary) || die "no patroni primary to kill"
			if [[ $u == patroni-primary ]]; then kill_patroni_node "$p"; else kill_patroni_postmaster "$p"; fi
			;;
		patroni-*) kill_patroni_node "$u" ;;
		*) kill_unit "$u" ;;
		esac
	done
}

cmd_env() {
	find_dir || die "no services running (no FLASHORDER_SERVICES_DIR and no $POINTER)"
	[[ -f $DIR/env ]] || die "$DIR/env missing"
	cat "$DIR/env"
}

cmd_status() {
	find_dir || { echo "no services dir"; return 0; }
	local u pid extra
	echo "dir: $DIR"
	for u in $(known_units); do
		extra=""
		[[ $u == zookeeper || $u == zk3-* ]] && extra=" mode=$(zk_mode "$u")"
		if [[ $u == patroni-* ]]; then
			local name role state lag
			extra=" pg_port=$(cat "$DIR/$u/pg_port") role=down"
			while read -r name role state lag; do
				[[ $name == "$u" ]] && extra=" pg_port=$(cat "$DIR/$u/pg_port") role=$role state=$state lag=$lag"
			done < <(patroni_members || true)
		fi
		if pid=$(unit_pid "$u"); then
			echo "$u: running pid=$pid port=$(uport "$u")$extra"
		else
			echo "$u: stopped port=$(uport "$u")"
		fi
	done
}

main() {
	local cmd=${1:-}
	(($#)) && shift
	CMD=$cmd
	case $cmd in start | stop | restart | start-again | kill | switchover) check_services "$@" ;; esac
	case $cmd in
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	restart | start-again) cmd_restart "$@" ;;
	kill) cmd_kill "$@" ;;
	switchover)
		[[ $* == patroni ]] || die "usage: $0 switchover patroni"
		cmd_switchover
		;;
	env) cmd_env ;;
	status) cmd_status ;;
	*)
		sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//' >&2
		exit 2
		;;
	esac
}

main "$@"
