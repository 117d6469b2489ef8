#!/usr/bin/env bash
# Rewrites the expected outputs (.txt: text, .json: JSON) of the check
# corpus from the current build. Review `git diff tests/check` afterwards:
# the test in tests/it/check.rs compares against these files.
#
# The first line of a .conf may carry options: `# check: --nginx ...`.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q
for f in tests/check/*.conf; do
    args=$(sed -n '1s/^# check: //p' "$f")
    # shellcheck disable=SC2086 # the options are words
    target/debug/switchyard check -p . $args -c "$f" > "${f%.conf}.txt" || true
    # shellcheck disable=SC2086
    target/debug/switchyard check -p . $args --format json -c "$f" > "${f%.conf}.json" || true
done
