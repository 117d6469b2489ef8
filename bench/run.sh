#!/usr/bin/env bash
# Switchyard vs nginx, side by side, on this machine, in one run.
#
#   bench/run.sh                 # full run (a few minutes)
#   ROUNDS=1 SECS=3 bench/run.sh # quicker
#
# Both proxies run the same configuration text with worker_processes 1,
# pinned to core 0; the echo backend and the load generator share core 1.
# Scenarios are interleaved (nginx first on odd rounds, Switchyard first on
# even ones). Per-operation CPU is the proxy's user+system time from /proc
# divided by the operations relayed; RSS is summed over the process tree.
# Results go to bench/out/<date>.jsonl and the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
IDLE=${IDLE:-9000}

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx..." >&2
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
. bench/common.sh

NCPU=$(nproc)

BACKEND=127.0.0.1:19001
conf() { # name listen-port log-port workers
    mkdir -p "$WORK/$1/logs"
    cat > "$WORK/$1/proxy.conf" <<CONF
daemon off;
worker_processes $4;
worker_rlimit_nofile 20000;
pid $WORK/$1/proxy.pid;
error_log $WORK/$1/logs/error.log error;
events { worker_connections 20000; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$2;
        location /ws {
            proxy_pass http://$BACKEND;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
    server {
        listen 127.0.0.1:$3;
        access_log $WORK/$1/logs/access.log;
        location /ws {
            proxy_pass http://$BACKEND;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
        }
    }
}
CONF
}
conf nginx 19020 19021 1
conf switchyard 19030 19031 1

taskset -c "$LOAD_CPU" "$LOAD" backend --listen "$BACKEND" 2>/dev/null & PIDS+=($!)
start_proxies() {
    taskset -c "$PROXY_CPU" "$NGINX" -p "$WORK/nginx/" -c proxy.conf -e logs/error.log & NGINX_PID=$!; PIDS+=($NGINX_PID)
    taskset -c "$PROXY_CPU" "$SY" -p "$WORK/switchyard/" -c proxy.conf -e logs/error.log & SY_PID=$!; PIDS+=($SY_PID)
    wait_port 19020; wait_port 19030
}
stop_proxies() {
    kill -TERM "$NGINX_PID" "$SY_PID" 2>/dev/null || true
    wait "$NGINX_PID" "$SY_PID" 2>/dev/null || true
    for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19020) 2>/dev/null || (echo > /dev/tcp/127.0.0.1/19030) 2>/dev/null || break; sleep 0.1; done
}
wait_port 19001
start_proxies

mkdir -p bench/out
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
OUT=bench/out/$STAMP.jsonl
{
    echo "# $(date -u) $(uname -srm) $(nproc) cores; $("$NGINX" -v 2>&1); switchyard $("$SY" -v 2>&1 | sed 's/.*switchyard\///')"
    grep -m1 'model name' /proc/cpuinfo | sed 's/^/# /'
} > "$OUT"

run() { # label pid port scenario args...
    local label=$1 pid=$2 port=$3; shift 3
    taskset -c "$LOAD_CPU" "$LOAD" "$@" --target "127.0.0.1:$port" --label "$label" --pid "$pid" | tee -a "$OUT" >&2
}
both() { # round scenario args... (nginx on 19020/19021, switchyard on 19030/19031; $LOGPORT=1 picks the logging server)
    local round=$1; shift
    local off=${LOGPORT:-0}
    if (( round % 2 )); then
        run nginx "$NGINX_PID" $((19020 + off)) "$@"; run switchyard "$SY_PID" $((19030 + off)) "$@"
    else
        run switchyard "$SY_PID" $((19030 + off)) "$@"; run nginx "$NGINX_PID" $((19020 + off)) "$@"
    fi
}

for round in $(seq "$ROUNDS"); do
    echo "== round $round of $ROUNDS" >&2
    both "$round" echo --conns 1 --size 64 --seconds "$SECS"
    both "$round" echo --conns 50 --size 64 --seconds "$SECS"
    both "$round" echo --conns 500 --size 64 --seconds "$SECS"
    both "$round" echo --conns 50 --size 16384 --seconds "$SECS"
    both "$round" bulk --conns 1 --mib 512
    LOGPORT=1 both "$round" handshakes --conns 20 --count 20000
done
# Idle memory on freshly started proxies (each run opens $IDLE connections).
stop_proxies; start_proxies
both 1 idle --conns "$IDLE"

# Two workers against one, everything unpinned: on a 2-core machine the
# load generator and backend need a core too, so this shows the cost per
# message with two workers rather than true scaling.
stop_proxies
conf nginx 19020 19021 2
conf switchyard 19030 19031 2
"$NGINX" -p "$WORK/nginx/" -c proxy.conf -e logs/error.log & NGINX_PID=$!; PIDS+=($NGINX_PID)
"$SY" -p "$WORK/switchyard/" -c proxy.conf -e logs/error.log & SY_PID=$!; PIDS+=($SY_PID)
wait_port 19020; wait_port 19030
LOAD_CPU=0-$((NCPU - 1))
for round in $(seq "$ROUNDS"); do
    both "$round" echo --conns 200 --size 64 --seconds "$SECS" --workers 2
done

ln -sf "$STAMP.jsonl" bench/out/latest.jsonl
echo
"$LOAD" report "$OUT"
