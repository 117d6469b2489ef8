#!/usr/bin/env bash
# The cost of following WebSocket frames, on this machine, in one run:
# one Switchyard process, two servers to the same echo backend, one a byte
# relay (no websocket_* directive), one following frames with keepalive
# pings (websocket_ping_interval 30s, websocket_max_message_size 16m:
# every header is read and checked). Scenarios alternate between them.
#
#   bench/frames.sh                  # three rounds
#   ROUNDS=1 SECS=3 bench/frames.sh  # quicker
#
# Proxy pinned to core 0, backend and load generator to core 1. Results go
# to bench/out/frames-<date>.jsonl and a table to stdout: CPU per 64 B
# message (1 and 50 connections), per MiB of bulk transfer (64 KiB
# frames), and resident memory per idle WebSocket with pings on.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
IDLE=${IDLE:-5000}
. bench/common.sh

BACKEND=127.0.0.1:19201
mkdir -p "$WORK/logs"
cat > "$WORK/proxy.conf" <<CONF
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $WORK/proxy.pid;
error_log $WORK/logs/error.log error;
events { worker_connections 20000; }
http {
    access_log off;
    proxy_read_timeout 3600s;
    proxy_send_timeout 3600s;
    server {
        listen 127.0.0.1:19230;
        location /ws { proxy_pass http://$BACKEND; }
    }
    server {
        listen 127.0.0.1:19231;
        location /ws {
            proxy_pass http://$BACKEND;
            websocket_ping_interval ${PING:-30s};
            websocket_max_message_size 16m;
        }
    }
}
CONF
taskset -c "$LOAD_CPU" "$LOAD" backend --listen "$BACKEND" 2>/dev/null & PIDS+=($!)
start_proxy() {
    taskset -c "$PROXY_CPU" "$SY" -p "$WORK/" -c proxy.conf -e logs/error.log & SY_PID=$!; PIDS+=($SY_PID)
    wait_port 19230; wait_port 19231
}
wait_port 19201
start_proxy

mkdir -p bench/out
OUT=bench/out/frames-$(date -u +%Y-%m-%dT%H%M%SZ).jsonl
echo "# $(date -u) $(uname -srm) $(nproc) cores; switchyard $("$SY" -v 2>&1 | sed 's/.*switchyard\///')" > "$OUT"

run() { # label port scenario args...
    local label=$1 port=$2; shift 2
    taskset -c "$LOAD_CPU" "$LOAD" "$@" --target "127.0.0.1:$port" --label "$label" --pid "$SY_PID" | tee -a "$OUT" >&2
}
both() { # round scenario args...
    local round=$1; shift
    if (( round % 2 )); then
        run bytes 19230 "$@"; run frames 19231 "$@"
    else
        run frames 19231 "$@"; run bytes 19230 "$@"
    fi
}
for round in $(seq "$ROUNDS"); do
    echo "== round $round of $ROUNDS" >&2
    both "$round" echo --conns 1 --size 64 --seconds "$SECS"
    both "$round" echo --conns 50 --size 64 --seconds "$SECS"
    both "$round" bulk --conns 1 --mib 512
    both "$round" bulk --conns 1 --mib 512 --frame-kib 1024
done
# Idle memory: a fresh process per relay kind, so the two do not share
# what the first one grew.
kill -TERM "$SY_PID"; wait "$SY_PID" 2>/dev/null || true
start_proxy
run bytes 19230 idle --conns "$IDLE"
kill -TERM "$SY_PID"; wait "$SY_PID" 2>/dev/null || true
start_proxy
run frames 19231 idle --conns "$IDLE"

echo
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(label, pred, key):
    v = [float(r[key]) for r in rows if r["label"] == label and pred(r) and key in r]
    return statistics.median(v) if v else float("nan")
cases = [
    ("64 B echo, 1 conn, CPU us/msg", lambda r: r["scenario"] == "echo" and int(r["conns"]) == 1, "cpu_us_per_msg"),
    ("64 B echo, 50 conns, CPU us/msg", lambda r: r["scenario"] == "echo" and int(r["conns"]) == 50, "cpu_us_per_msg"),
    ("bulk, 64 KiB frames, CPU us/MiB", lambda r: r["scenario"] == "bulk" and int(r.get("frame_kib", 64)) == 64, "cpu_us_per_mib"),
    ("bulk, 1 MiB frames, CPU us/MiB", lambda r: r["scenario"] == "bulk" and int(r.get("frame_kib", 64)) == 1024, "cpu_us_per_mib"),
    ("idle, KiB per WebSocket", lambda r: r["scenario"] == "idle", "kib_per_conn"),
]
print(f"{'':36} {'byte relay':>12} {'frames':>12} {'ratio':>7}")
for name, pred, key in cases:
    b, f = med("bytes", pred, key), med("frames", pred, key)
    print(f"{name:36} {b:12.2f} {f:12.2f} {f / b:7.3f}")
PY
