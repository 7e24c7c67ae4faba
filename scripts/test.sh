#!/usr/bin/env bash
# Second command of the README, and what CI runs: lint, then the whole test suite.
# Root-only tests create and remove their own namespaces, links and daemons.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/unicni-test.log
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' /tmp/unicni-test.log
exit "$status"
