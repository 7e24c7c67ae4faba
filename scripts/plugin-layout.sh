#!/bin/bash
# Records which functions the CNI plugin runs (VERSION, then ADD and DEL with the flannel
# backend, in a network namespace of its own) and writes them, in first-run order, to
# layout/plugin-hot-symbols.txt, which build.rs hands to the linker (ld.lld) so that a
# release build keeps them together. Uses valgrind's callgrind on a release build.
#
#   scripts/plugin-layout.sh           record and rewrite the list (then rebuild release)
#   scripts/plugin-layout.sh --check   how many listed functions the release binary has
#
# Symbol names carry hashes that change when a crate's dependencies or features change;
# a name that no longer exists is skipped by the linker, so a stale list only costs speed.
# Root: the plugin creates a bridge, a veth pair and a namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
list=layout/plugin-hot-symbols.txt
bin=target/release/unicni

if [ "${1:-}" = "--check" ]; then
    [ -x "$bin" ] || { echo "$bin missing: cargo build --release -p unicni" >&2; exit 1; }
    total=$(grep -vc '^#' "$list")
    found=$(grep -v '^#' "$list" | sort -u | comm -12 - <(nm "$bin" | awk '{print $NF}' | sort -u) | wc -l)
    echo "$found of $total listed functions are in $bin"
    [ $((found * 10)) -ge $((total * 9)) ] || { echo "the list is stale: run $0" >&2; exit 1; }
    exit 0
fi

command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install -y valgrind" >&2; exit 1; }
cargo build --release -p unicni
work=$(mktemp -d)
ns="ulayout$$"
bridge="ulay$$"
cleanup() {
    ip netns del "$ns" 2>/dev/null || true
    ip link del "$bridge" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
cat > "$work/conf.json" <<JSON
{"cniVersion": "1.1.0", "name": "unicni-layout", "type": "unicni", "backend": "flannel",
 "clusterNetwork": "10.254.0.0/16", "subnet": "10.254.9.0/24", "bridge": "$bridge",
 "mtu": 1450, "ipMasq": false, "hairpin": true,
 "stateDir": "$work/state", "runDir": "$work/run"}
JSON
plugin() { # COMMAND OUTFILE
    env CNI_COMMAND="$1" CNI_CONTAINERID=layout CNI_NETNS="/run/netns/$ns" CNI_IFNAME=eth0 \
        CNI_PATH=/usr/lib/cni \
        valgrind --tool=callgrind --demangle=no --callgrind-out-file="$2" "$bin" \
        < "$work/conf.json" > /dev/null 2> "$2.log" || { cat "$2.log" >&2; exit 1; }
}
# The first ADD builds the bridge; the recorded ones find it, as every later pod does.
plugin ADD "$work/warm.out" && plugin DEL "$work/warm2.out"
plugin VERSION "$work/1.out"
plugin ADD "$work/2.out"
plugin DEL "$work/3.out"
{
    echo "# The functions the CNI plugin runs for VERSION, ADD and DEL (flannel backend), in"
    echo "# first-run order. Written by scripts/plugin-layout.sh; build.rs explains the use."
    python3 - "$work"/1.out "$work"/2.out "$work"/3.out <<'PY'
import re, sys
# callgrind names objects (ob/cob) and functions (fn/cfn) by id, the name given once.
seen = {}
for path in sys.argv[1:]:
    obs, fns, ob = {}, {}, None
    for line in open(path, errors="replace"):
        m = re.match(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if not m:
            continue
        kind, ident, name = m.groups()
        table = obs if kind.endswith("ob") else fns
        if name:
            table[ident] = name
        if kind == "ob":
            ob = obs.get(ident)
        elif kind == "fn" and ob and ob.endswith("/unicni") and fns.get(ident):
            seen.setdefault(fns[ident], len(seen))
for name in sorted(seen, key=seen.get):
    print(name)
PY
} > "$list.new"
mv "$list.new" "$list"
echo "$(grep -vc '^#' "$list") functions in $list; rebuild: cargo build --release -p unicni"
