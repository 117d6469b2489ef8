# Shared by the benchmark scripts (sourced, from the repository root):
# builds the binaries, makes a work directory removed on exit with every
# process the script started (their PIDs go into PIDS), and wait_port.
cargo build --release --features bench >&2
SY=target/release/switchyard
LOAD=target/release/switchyard-bench
PROXY_CPU=0
LOAD_CPU=$(( $(nproc) > 1 ? 1 : 0 ))
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s at most).
wait_port() {
    for _ in $(seq 100); do
        (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    exit 1
}
