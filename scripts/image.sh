#!/usr/bin/env bash
# Builds the unicni image offline and exports it as an OCI archive containerd imports
# (`ctr -n k8s.io images import ARCHIVE`). Prints the image reference on stdout.
#
#   scripts/image.sh                      release build, localhost/unicni:<version>
#   UNICNI_IMAGE_PROFILE=dev scripts/image.sh     a debug build (faster to make)
#   UNICNI_IMAGE_BINARY=path scripts/image.sh     an already built binary
#   UNICNI_IMAGE=ref UNICNI_IMAGE_ARCHIVE=file    the reference and where the archive goes
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
image=${UNICNI_IMAGE:-localhost/unicni:$version}
archive=${UNICNI_IMAGE_ARCHIVE:-$root/target/unicni-image.tar}
profile=${UNICNI_IMAGE_PROFILE:-release}

for tool in podman ldd; do
  command -v "$tool" >/dev/null || { echo "image.sh: $tool is not installed (scripts/setup.sh)" >&2; exit 1; }
done
nft=$(command -v nft || true)
[ -n "$nft" ] || { echo "image.sh: nft is not installed (apt-get install nftables): the agent runs it" >&2; exit 1; }

if [ -n "${UNICNI_IMAGE_BINARY:-}" ]; then
  binary=$UNICNI_IMAGE_BINARY
else
  (cd "$root" && cargo build --profile "$profile" -p unicni --bin unicni >&2)
  dir=$profile; [ "$profile" = dev ] && dir=debug
  binary=$root/target/$dir/unicni
fi
[ -x "$binary" ] || { echo "image.sh: $binary is not an executable" >&2; exit 1; }

stage=$(mktemp -d "${TMPDIR:-/tmp}/unicni-image.XXXXXX")
trap 'rm -rf "$stage"' EXIT
rootfs=$stage/rootfs

# Copies $1 to $2 in the rootfs, then every library ldd resolves for it (the dynamic
# loader included) to the same path it has on this host: the loader's default search
# path finds them there without an ld.so.cache.
stage_binary() {
  install -D -m 0755 "$1" "$rootfs$2"
  local libs
  libs=$(ldd "$1" | grep -o '/[^ ]*' ) || { echo "image.sh: ldd $1 failed" >&2; exit 1; }
  for lib in $libs; do
    [ -e "$rootfs$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  done
}
# Debug info stays out of the image (symbols stay: backtraces keep function names).
stripped=$stage/unicni
if command -v strip >/dev/null; then
  strip --strip-debug -o "$stripped" "$binary"
else
  cp "$binary" "$stripped"
fi
stage_binary "$stripped" /usr/local/bin/unicni
stage_binary "$nft" /usr/sbin/nft
# getaddrinfo's order (files, then DNS); glibc >= 2.34 has both in libc itself.
install -D -m 0644 /dev/stdin "$rootfs/etc/nsswitch.conf" <<<'hosts: files dns'
mkdir -p "$rootfs/tmp" && chmod 1777 "$rootfs/tmp"

podman build --quiet -f "$root/deploy/Containerfile" -t "$image" "$stage" >&2
mkdir -p "$(dirname "$archive")"
rm -f "$archive"
podman save --quiet --format oci-archive -o "$archive" "$image" >&2
echo "image.sh: $image saved to $archive ($(du -h "$archive" | cut -f1))" >&2
echo "$image"
