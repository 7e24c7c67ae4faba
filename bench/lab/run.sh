#!/usr/bin/env bash
# Lab benchmarks (root), each against its reference in the same run:
#  - cross-node pod-to-pod TCP throughput and request/response latency for flannel (vxlan,
#    host-gw) and terway (shared-eni routed and eBPF, exclusive-eni) vs the host network;
#  - terway pod ADD latency, warm and empty ENI pool, vs the reference bridge + host-local;
#  - the flannel agent at 15,000 peers.
# Builds the release binary, prints the numbers. Needs iperf3 and containernetworking-plugins.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin unicni
BIN=${CARGO_TARGET_DIR:-target}/release/unicni
"$BIN" lab bench --seconds "${SECONDS_PER_RUN:-5}" --repeats "${REPEATS:-3}"
"$BIN" lab bench-add --pods "${PODS:-20}"
for mode in vxlan host-gw; do
  "$BIN" lab --id bench scale --peers 15000 --mode "$mode"
done
