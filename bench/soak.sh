#!/usr/bin/env bash
# Soak with reloads, Switchyard and nginx one after the other, loopback only:
# CONNS WebSockets at a time open, carry MESSAGES numbered echoes each and
# close, for SECONDS, while the proxy is reloaded every RELOAD seconds and
# its logs reopened every REOPEN seconds. Reports, per proxy: WebSockets
# opened and completed, messages sent and echoed, failures (refused, cut,
# wrong echo), reloads sent, and RSS and open descriptors (summed over the
# process tree) before, at peak and 5 s after.
#
#   bench/soak.sh                        # 180 s each
#   SECONDS_EACH=30 bench/soak.sh        # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${SECONDS_EACH:-180}
CONNS=${CONNS:-200}
MESSAGES=${MESSAGES:-20}
RELOAD=${RELOAD:-3}
REOPEN=${REOPEN:-10}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
. bench/common.sh

BACKEND=127.0.0.1:19101
taskset -c 1 "$LOAD" backend --listen "$BACKEND" 2>/dev/null & PIDS+=($!)

tree() { # pid: the pid and its descendants
    local p=$1
    echo "$p"
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree "$c"; done
}
rss_kib() { local t=0; for p in $(tree "$1"); do t=$((t + $(awk '/VmRSS/{print $2}' /proc/"$p"/status 2>/dev/null || echo 0))); done; echo "$t"; }
fds() { local t=0; for p in $(tree "$1"); do t=$((t + $(ls /proc/"$p"/fd 2>/dev/null | wc -l))); done; echo "$t"; }

soak() { # name binary port
    local name=$1 bin=$2 port=$3 dir="$WORK/$1"
    mkdir -p "$dir/logs"
    cat > "$dir/proxy.conf" <<CONF
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $dir/proxy.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 20000; }
http {
    access_log $dir/logs/access.log;
    server {
        listen 127.0.0.1:$port;
        location /ws {
            proxy_pass http://$BACKEND;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
        }
    }
}
CONF
    taskset -c 0 "$bin" -p "$dir/" -c proxy.conf -e logs/error.log & local pid=$!; PIDS+=($pid)
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    sleep 1
    local rss0 fds0 rss_peak fds_peak reloads=0 reopens=0
    rss0=$(rss_kib "$pid"); fds0=$(fds "$pid"); rss_peak=$rss0; fds_peak=$fds0
    taskset -c 1 "$LOAD" soak --target "127.0.0.1:$port" --label "$name" \
        --conns "$CONNS" --messages "$MESSAGES" --seconds "$SECONDS_EACH" > "$dir/result.json" &
    local load=$!
    local t=0
    while kill -0 "$load" 2>/dev/null; do
        sleep 1; t=$((t + 1))
        local r f; r=$(rss_kib "$pid"); f=$(fds "$pid")
        (( r > rss_peak )) && rss_peak=$r
        (( f > fds_peak )) && fds_peak=$f
        if (( t % RELOAD == 0 )); then "$bin" -p "$dir/" -c proxy.conf -s reload 2>/dev/null && reloads=$((reloads + 1)); fi
        if (( t % REOPEN == 0 )); then "$bin" -p "$dir/" -c proxy.conf -s reopen 2>/dev/null && reopens=$((reopens + 1)); fi
    done
    wait "$load"
    sleep 5
    local rss1 fds1; rss1=$(rss_kib "$pid"); fds1=$(fds "$pid")
    echo "$name: $(cat "$dir/result.json")"
    echo "$name: reloads $reloads, reopens $reopens; RSS KiB before $rss0, peak $rss_peak, after $rss1; fds before $fds0, peak $fds_peak, after $fds1; error log lines $(wc -l < "$dir/logs/error.log")"
    kill -QUIT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

soak switchyard "$SY" 19130
soak nginx "$NGINX" 19120
