#!/usr/bin/env bash
# HTTP/2 beside nginx, on this machine, in one run:
#
#   1. proxied HTTP/2 requests: h2load (Debian's nghttp2-client) over h2c
#      to Switchyard and to nginx (`listen ... http2`), both proxying to the
#      same HTTP/1.1 backend; proxy CPU per request.
#   2. WebSocket messages over HTTP/2 (RFC 8441, Switchyard only: nginx has
#      no extended CONNECT) against the same WebSockets over HTTP/1.1
#      through Switchyard: proxy CPU per 64-byte message.
#
#   bench/h2.sh                  # three rounds
#   ROUNDS=1 SECS=3 bench/h2.sh  # quicker
#
# Proxies pinned to core 0, backend and load generators to core 1.
# Results go to bench/out/h2-<date>.jsonl and a table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
REQUESTS=${REQUESTS:-100000}

need=()
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
. bench/common.sh

BACKEND=127.0.0.1:19101
conf() { # name port
    mkdir -p "$WORK/$1/logs"
    cat > "$WORK/$1/proxy.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/$1/proxy.pid;
error_log $WORK/$1/logs/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    # h2load does not reconnect after a GOAWAY: no per-connection limit.
    keepalive_requests 10000000;
    upstream be { server $BACKEND; keepalive 32; }
    server {
        listen 127.0.0.1:$2 http2;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /ws { proxy_pass http://$BACKEND; proxy_read_timeout 3600s; }
    }
    server {
        listen 127.0.0.1:$(( $2 + 1 ));
        location /ws { proxy_pass http://$BACKEND; proxy_read_timeout 3600s; }
    }
}
CONF
}
conf nginx 19120
conf switchyard 19130
taskset -c "$LOAD_CPU" "$LOAD" backend --listen "$BACKEND" 2>/dev/null & PIDS+=($!)
taskset -c "$PROXY_CPU" "$NGINX" -p "$WORK/nginx/" -c proxy.conf -e logs/error.log & NGINX_PID=$!; PIDS+=($NGINX_PID)
taskset -c "$PROXY_CPU" "$SY" -p "$WORK/switchyard/" -c proxy.conf -e logs/error.log & SY_PID=$!; PIDS+=($SY_PID)
wait_port 19101; wait_port 19120; wait_port 19130; wait_port 19131

mkdir -p bench/out
OUT=bench/out/h2-$(date -u +%Y-%m-%dT%H%M%SZ).jsonl
echo "# $(date -u) $(uname -srm) $(nproc) cores; $("$NGINX" -v 2>&1); $(h2load --version | head -1)" > "$OUT"

ticks=$(getconf CLK_TCK)
cpu() { # pid -> CPU seconds of the process and its children (nginx's worker)
    local p total=0
    for p in "$1" $(pgrep -P "$1" || true); do
        total=$(awk -v t="$ticks" -v acc="$total" '{ printf "%.4f", acc + ($14 + $15) / t }' "/proc/$p/stat")
    done
    echo "$total"
}
requests() { # label pid port
    local before after done_
    before=$(cpu "$2")
    done_=$(taskset -c "$LOAD_CPU" h2load -n "$REQUESTS" -c 10 -m 10 "http://127.0.0.1:$3/" 2>&1 |
        sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p')
    after=$(cpu "$2")
    echo "{\"scenario\":\"h2_requests\",\"label\":\"$1\",\"requests\":$done_,\"cpu_us_per_req\":$(awk -v a="$after" -v b="$before" -v n="$done_" 'BEGIN { printf "%.3f", (a - b) * 1e6 / (n > 0 ? n : 1) }')}" | tee -a "$OUT" >&2
}
for round in $(seq "$ROUNDS"); do
    echo "== round $round of $ROUNDS" >&2
    if (( round % 2 )); then
        requests nginx "$NGINX_PID" 19120; requests switchyard "$SY_PID" 19130
    else
        requests switchyard "$SY_PID" 19130; requests nginx "$NGINX_PID" 19120
    fi
    for conns in 1 50; do
        taskset -c "$LOAD_CPU" "$LOAD" echo --conns "$conns" --size 64 --seconds "$SECS" --target 127.0.0.1:19131 --label switchyard --pid "$SY_PID" | tee -a "$OUT" >&2
        taskset -c "$LOAD_CPU" "$LOAD" echo --h2 --conns "$conns" --size 64 --seconds "$SECS" --target 127.0.0.1:19130 --label switchyard --pid "$SY_PID" | tee -a "$OUT" >&2
    done
done

echo
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(pred, key):
    v = [float(r[key]) for r in rows if pred(r)]
    return statistics.median(v) if v else float("nan")
n = med(lambda r: r["scenario"] == "h2_requests" and r["label"] == "nginx", "cpu_us_per_req")
s = med(lambda r: r["scenario"] == "h2_requests" and r["label"] == "switchyard", "cpu_us_per_req")
print(f"HTTP/2 proxied requests, CPU us/request: nginx {n:.2f}, switchyard {s:.2f}, ratio {s / n:.2f}")
for c in (1, 50):
    h1 = med(lambda r: r["scenario"] == "echo" and int(r["conns"]) == c, "cpu_us_per_msg")
    h2 = med(lambda r: r["scenario"] == "echo_h2" and int(r["conns"]) == c, "cpu_us_per_msg")
    print(f"64 B WebSocket messages, {c} conns, CPU us/msg: HTTP/1.1 tunnel {h1:.2f}, RFC 8441 over HTTP/2 {h2:.2f}, ratio {h2 / h1:.2f}")
PY
