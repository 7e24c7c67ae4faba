#!/usr/bin/env bash
# Lab benchmarks (root): cross-node pod-to-pod throughput/latency vs the host network, and
# the agent at 15,000 peers. Builds the release binary, prints the numbers.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin unicni
BIN=${CARGO_TARGET_DIR:-target}/release/unicni
"$BIN" lab --id bench bench --seconds "${SECONDS_PER_RUN:-5}"
for mode in vxlan host-gw; do
  "$BIN" lab --id bench scale --peers 15000 --mode "$mode"
done
