#!/usr/bin/env python3
"""Benchmark of `unicni assess`: a generated inventory of 15,000 nodes and 300,000 pods,
assessed end to end through the real binary reading the file.

Target: under 1 s wall clock and under 500 MiB peak memory (RSS of the child, from
getrusage(RUSAGE_CHILDREN) ru_maxrss). Prints both per run and the best/worst over runs.

    bench/assess/run.py [--binary target/release/unicni] [--nodes 15000] [--pods 300000]
                        [--runs 5] [--keep DIR]

Exit status 0 when every run meets the target, 1 otherwise.
"""
import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

ZONES = ["cn-hangzhou-h", "cn-hangzhou-i", "cn-hangzhou-j", "cn-hangzhou-k"]
TYPES = ["ecs.g7.4xlarge", "ecs.c7.4xlarge", "ecs.g7.2xlarge", "ecs.r7.8xlarge", "ecs.g8i.4xlarge"]


def generate(nodes: int, pods: int, seed: int = 7) -> dict:
    """A flannel vpc-route cluster the size of a large terway cluster, with a little of
    everything the checks look at: pods not running, hostNetwork and hostPort pods,
    StatefulSets, NodePort services, network policies."""
    rnd = random.Random(seed)
    node_list = []
    for i in range(nodes):
        node_list.append({
            "name": f"node-{i:05d}",
            "zone": ZONES[i % len(ZONES)],
            "instance_type": TYPES[i % len(TYPES)],
            "pool": f"pool-{i // 500:02d}",
            "pod_cidr": f"10.{64 + i // 256}.{i % 256}.0/24",
            "internal_ip": f"192.168.{i // 250}.{i % 250 + 1}",
        })
    pod_list = []
    for j in range(pods):
        n = j % nodes
        p = {
            "namespace": f"ns-{j % 400}",
            "name": f"app-{j // 20}-{j % 20}",
            "node": node_list[n]["name"],
            "owner": f"Deployment/app-{j // 20}",
            "ips": [f"10.{64 + n // 256}.{n % 256}.{j // nodes % 250 + 2}"],
        }
        r = rnd.random()
        if r < 0.01:
            p["phase"] = "Pending"
            p["reason"] = "CrashLoopBackOff"
        elif r < 0.02:
            p["host_network"] = True
            del p["ips"]
        elif r < 0.021:
            p["host_ports"] = [8080]
        elif r < 0.05:
            p["owner"] = f"StatefulSet/db-{j // 20}"
        pod_list.append(p)
    services = [{"namespace": f"ns-{k % 400}", "name": f"svc-{k}", "type": "ClusterIP"} for k in range(20000)]
    services += [{"namespace": "edge", "name": f"np-{k}", "type": "NodePort", "node_ports": [30000 + k]} for k in range(50)]
    return {
        "kind": "UnicniInventory",
        "version": 1,
        "generated": f"bench/assess/run.py: {nodes} nodes, {pods} pods",
        "cluster": {
            "name": "bench",
            "network": {"backend": "flannel", "mode": "vpc-route", "cluster_cidr": "10.64.0.0/10", "node_subnet_len": 24},
            "service_cidr": "172.21.0.0/16",
            "vpc_cidr": "192.168.0.0/16",
            "node_limit": 15000,
        },
        "cloud": {
            "vswitches": [
                {"id": f"vsw-{z}", "zone": z, "cidr": f"192.168.{128 + 16 * k}.0/20", "free_ips": 100000}
                for k, z in enumerate(ZONES)
            ],
            "route_table": {"quota": 1000, "entries_used": 0},
        },
        "nodes": node_list,
        "pods": pod_list,
        "services": services,
        "network_policies": [{"namespace": f"ns-{k}", "name": "default-deny"} for k in range(400)],
    }


def run_once(binary: str, inventory: str, to: str) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS in MiB and exit code of one assessment."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(
        [binary, "assess", "--to", to, "--inventory", inventory, "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    wall = time.perf_counter() - start
    # ru_maxrss of RUSAGE_CHILDREN is the largest of all waited-for children (KiB on Linux);
    # runs are done from a fresh interpreter each, see main(), so it is this child's.
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib < before:
        peak_kib = before
    return wall, peak_kib / 1024.0, proc.returncode, proc.stdout.decode() if proc.returncode in (0, 2, 3) else proc.stderr.decode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--binary", default=os.environ.get("UNICNI_BIN", os.path.join(root, "target", "release", "unicni")))
    ap.add_argument("--nodes", type=int, default=15000)
    ap.add_argument("--pods", type=int, default=300000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--to", default="terway", choices=["terway", "flannel"])
    ap.add_argument("--keep", help="directory to keep the generated inventory in")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one run in this process
    args = ap.parse_args()

    if args.one:
        wall, rss, code, out = run_once(args.binary, args.one, args.to)
        print(json.dumps({"wall": wall, "rss": rss, "code": code, "out": out[:400] if code not in (0, 2, 3) else ""}))
        return 0

    if not os.access(args.binary, os.X_OK):
        print(f"no executable at {args.binary}: build it with `cargo build --release` or pass --binary", file=sys.stderr)
        return 1
    workdir = args.keep or tempfile.mkdtemp(prefix="unicni-bench-assess-")
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "inventory.json")
    t0 = time.perf_counter()
    with open(path, "w") as f:
        json.dump(generate(args.nodes, args.pods), f, separators=(",", ":"))
    size = os.path.getsize(path) / (1024 * 1024)
    print(f"inventory: {args.nodes} nodes, {args.pods} pods, {size:.1f} MiB JSON ({time.perf_counter() - t0:.1f} s to generate) at {path}")

    ok = True
    walls, rsss = [], []
    for i in range(args.runs):
        # A fresh interpreter per run so that RUSAGE_CHILDREN's maximum is this run's alone.
        res = subprocess.run([sys.executable, __file__, "--binary", args.binary, "--to", args.to, "--one", path],
                             stdout=subprocess.PIPE, check=True)
        r = json.loads(res.stdout)
        if r["code"] not in (0, 2, 3):
            print(f"run {i + 1}: unicni failed with exit code {r['code']}: {r['out']}", file=sys.stderr)
            return 1
        walls.append(r["wall"])
        rsss.append(r["rss"])
        print(f"run {i + 1}: {r['wall'] * 1000:.0f} ms wall, {r['rss']:.0f} MiB peak RSS, exit {r['code']}")
    best, worst = min(walls), max(walls)
    peak = max(rsss)
    ok = worst < 1.0 and peak < 500
    print(f"result: wall best {best * 1000:.0f} ms / median {sorted(walls)[len(walls) // 2] * 1000:.0f} ms / worst {worst * 1000:.0f} ms; "
          f"peak RSS {peak:.0f} MiB; target < 1000 ms and < 500 MiB: {'met' if ok else 'NOT met'}")
    if not args.keep:
        os.remove(path)
        os.rmdir(workdir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
