#!/usr/bin/env bash
# Lab benchmarks (root), each against its reference in the same run:
#  - cross-node pod-to-pod TCP throughput and request/response latency for flannel (vxlan,
#    host-gw) and terway (shared-eni routed and eBPF, exclusive-eni) vs the host network,
#    in interleaved slices with per-slice ratios (median and quartiles);
#  - NetworkPolicy end to end: 1,000 policies vs none on the same terway eBPF pods,
#    alternating slices, request rate on a kept-open connection and connection rate;
#  - terway pod ADD latency, warm and empty ENI pool, vs the reference bridge + host-local;
#  - the flannel agent at 15,000 peers.
# Builds the release binary, prints the numbers. Needs iperf3 and containernetworking-plugins.
# Run it on a quiet machine: the slices compare paths next to each other in time, but a
# machine busy with other work still widens the quartiles.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin unicni
BIN=${CARGO_TARGET_DIR:-target}/release/unicni
PIN=${PIN_CPUS:+--pin-cpus}
"$BIN" lab bench --seconds "${SECONDS_PER_RUN:-3}" --repeats "${REPEATS:-9}" \
  --slices "${SLICES:-60}" --rounds "${ROUNDS:-2000}" $PIN
"$BIN" lab bench --policies "${POLICIES:-1000}" --slices "${POLICY_SLICES:-40}" \
  --rounds "${POLICY_ROUNDS:-10000}" $PIN
"$BIN" lab bench-add --pods "${PODS:-20}"
for mode in vxlan host-gw; do
  "$BIN" lab --id bench scale --peers 15000 --mode "$mode"
done
