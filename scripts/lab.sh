#!/usr/bin/env bash
# First command of the README: install what is needed, build, and run the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bin unicni
./target/release/unicni lab "$@"
