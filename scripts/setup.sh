#!/usr/bin/env bash
# Installs what unicni needs to build, test and run its lab on Debian 12 (as root).
set -euo pipefail

packages=(
  clang llvm libbpf-dev            # eBPF programs
  iproute2 iputils-ping nftables   # the datapath and the lab's checks
  iperf3                           # lab benchmarks
  iptables                         # the Service benchmark's kube-proxy-like peer (iptables-legacy and -nft)
  etcd-server etcd-client          # the etcd store
  containernetworking-plugins      # reference plugins: our peers in tests and benchmarks
  containerd runc podman busybox-static  # real runtimes in the end-to-end tests
  protobuf-compiler                # CRI client code generation in tests
  valgrind                         # scripts/plugin-layout.sh records what the plugin runs
  python3 ca-certificates curl
  python3-venv                     # the vendor SDKs' virtual environment (below)
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

# The vendor's official Python SDKs judge the cloud emulator
# (crates/cloud-sim/tests/sdk.rs): the core SDK (with its ecs and vpc requests) signs
# V2, the Tea SDKs V3. kubernetes-validate (the upstream OpenAPI schemas as JSON schema)
# judges `unicni manifests` (tests/deploy_manifest.rs).
sdk_venv="${UNICNI_SDK_VENV:-/opt/unicni-sdk-venv}"
sdk_packages=(
  aliyun-python-sdk-core aliyun-python-sdk-ecs aliyun-python-sdk-vpc
  alibabacloud_ecs20140526 alibabacloud_vpc20160428 kubernetes-validate
)
if [ ! -x "$sdk_venv/bin/python" ]; then
  echo "setup: creating the vendor SDK virtual environment $sdk_venv" >&2
  python3 -m venv "$sdk_venv"
fi
if ! "$sdk_venv/bin/python" -c 'import aliyunsdkcore, aliyunsdkecs, aliyunsdkvpc, alibabacloud_ecs20140526, alibabacloud_vpc20160428, kubernetes_validate' 2>/dev/null; then
  echo "setup: installing ${sdk_packages[*]} into $sdk_venv" >&2
  "$sdk_venv/bin/pip" install --quiet "${sdk_packages[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
    exit 1
  fi
fi
