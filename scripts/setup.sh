#!/usr/bin/env bash
# Installs what unicni needs to build, test and run its lab on Debian 12 (as root).
set -euo pipefail

packages=(
  clang llvm libbpf-dev            # eBPF programs
  iproute2 iputils-ping nftables   # the datapath and the lab's checks
  iperf3                           # lab benchmarks
  etcd-server etcd-client          # the etcd store
  containernetworking-plugins      # reference plugins: our peers in tests and benchmarks
  containerd runc podman busybox-static  # real runtimes in the end-to-end tests
  protobuf-compiler                # CRI client code generation in tests
  python3 ca-certificates curl
)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
    exit 1
  fi
fi
