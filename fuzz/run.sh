#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 60 s each; FUZZ_SECONDS
# to change, target names as arguments to choose). Needs a nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target's
# working corpus starts from fuzz/seeds/<target>; a crash or hang is kept in
# fuzz/artifacts/<target>/ and makes the script fail.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-60}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(request_head response_head chunked_body config)
fi
if [ -z "${FUZZ_SKIP_BUILD:-}" ]; then
    cargo +nightly fuzz build --release
fi
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    log="$(mktemp)"
    mkdir -p "artifacts/$t"
    # The built binary directly: no cargo (and no build lock) while it runs.
    if ! "target/x86_64-unknown-linux-gnu/release/$t" "corpus/$t" \
        -artifact_prefix="artifacts/$t/" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        status=1
        echo "$t: FAILED (see fuzz/artifacts/$t)"
        grep -E "ERROR|panicked|SUMMARY" "$log" | head -5
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -oE 'DONE[[:space:]]+cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
    echo "$t: ${seconds}s, $execs executions, ${cov:-no final line}, corpus $(ls "corpus/$t" | wc -l) inputs"
    rm -f "$log"
done
exit "$status"
