#!/usr/bin/env python3
"""Side-by-side baseline: Sluice against kinesalite and kinesis-local, and against the disk.

Starts a release Sluice on a temporary data directory and both peers on loopback
(scripts/peers.sh), drives all three with the same `sluice bench produce` workloads in one run,
and prints a Markdown report with ratios. Usage:

    scripts/baseline.py [--seconds 5] [--data-dir DIR] > report.md

The machine this runs on is shared with the load client: figures are for comparison within the
run, not absolute.
"""

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = {"kinesalite": "http://127.0.0.1:4571", "kinesis-local": "http://127.0.0.1:4572"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench(binary, *args, env=None):
    out = subprocess.run([str(binary), "bench", *args, "--json"], capture_output=True, text=True, timeout=600, env=env)
    if out.returncode != 0:
        raise SystemExit(f"bench {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--data-dir", default=None, help="where Sluice and the disk baseline write (default: a temp dir)")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "sluice"))
    args = ap.parse_args()
    binary = Path(args.binary)
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="sluice-baseline-"))
    port = free_port()
    sluice = subprocess.Popen(
        [str(binary), "serve", "--data-dir", str(data / "sluice"), "--listen", f"127.0.0.1:{port}", "--push-listen", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    subprocess.run([str(ROOT / "scripts" / "peers.sh"), "start"], check=True, stdout=subprocess.DEVNULL)
    endpoints = {"sluice": f"http://127.0.0.1:{port}", **PEERS}
    time.sleep(2)
    secs = str(args.seconds)
    runs = {}
    n = 0
    try:
        disk = bench(binary, "produce", "--endpoint", endpoints["sluice"], "--stream", "warmup", "--seconds", "2",
                     "--disk-baseline", str(data / "disk"))["disk_baseline"]
        for size in (1024, 100):
            for producers in (1, 4, 16):
                for target, ep in endpoints.items():
                    n += 1
                    r = bench(binary, "produce", "--endpoint", ep, "--stream", f"base-{n}", "--shards", "4",
                              "--batch", "500", "--record-size", str(size), "--producers", str(producers), "--seconds", secs)
                    runs[(target, size, producers)] = r
                    print(f"{target} {size} B x {producers}: {r['records_per_s']:.0f} records/s", file=sys.stderr)
        scaling = []
        for shards in (1, 4, 16, 64):
            n += 1
            r = bench(binary, "produce", "--endpoint", endpoints["sluice"], "--stream", f"scale-{n}", "--shards", str(shards),
                      "--batch", "500", "--record-size", "1024", "--producers", "4", "--seconds", secs)
            scaling.append((shards, r))
            print(f"sluice {shards} shards: {r['records_per_s']:.0f} records/s", file=sys.stderr)
        n += 1
        moderate = bench(binary, "produce", "--endpoint", endpoints["sluice"], "--stream", f"moderate-{n}", "--shards", "4",
                         "--batch", "100", "--record-size", "1024", "--producers", "4", "--rate", "20000", "--seconds", secs)
    finally:
        subprocess.run([str(ROOT / "scripts" / "peers.sh"), "stop"], stdout=subprocess.DEVNULL)
        sluice.send_signal(signal.SIGTERM)
        sluice.wait(timeout=60)
        if not args.data_dir:
            shutil.rmtree(data, ignore_errors=True)

    print("### Ingest: PutRecords of 500 records, 4 shards, closed loop\n")
    print("| record | producers | Sluice records/s | kinesalite | kinesis-local | Sluice / kinesalite | Sluice / kinesis-local | Sluice MB/s | Sluice call p99 ms | Sluice CPU-s per M records |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in (1024, 100):
        for producers in (1, 4, 16):
            s, k, m = (runs[(t, size, producers)] for t in ("sluice", "kinesalite", "kinesis-local"))
            ratio = lambda a, b: f"{a['records_per_s'] / b['records_per_s']:.0f}x" if b["records_per_s"] > 0 else "n/a"
            cpu = s.get("daemon_cpu_seconds_per_million_records")
            cpu_text = f"{cpu:.2f}" if cpu else "n/a"
            print(f"| {size} B | {producers} | {s['records_per_s']:.0f} | {k['records_per_s']:.0f} | {m['records_per_s']:.0f} | "
                  f"{ratio(s, k)} | {ratio(s, m)} | {s['mb_per_s']:.1f} | {s['call_latency']['p99_ms']:.1f} | {cpu_text} |")
    best = max(runs[("sluice", 1024, p)]["mb_per_s"] for p in (1, 4, 16))
    print(f"\n### Against the disk\n")
    print(f"- Durable sequential appends of 500 KiB (write + fdatasync), same run: {disk['mb_per_s']:.1f} MB/s; "
          f"fdatasync p99 {disk['fdatasync_p99_us'] / 1000:.2f} ms; 4 KiB write + fdatasync p99 {disk['fdatasync_4k_p99_us'] / 1000:.2f} ms.")
    print(f"- Best Sluice ingest of 1 KiB records above: {best:.1f} MB/s = {best / disk['mb_per_s']:.0%} of the disk's durable sequential bandwidth.")
    lat = moderate["call_latency"]
    print(f"- Moderate load (open loop, 20,000 records/s, PutRecords of 100 x 1 KiB, 4 producers): put-ack p50 {lat['p50_ms']:.2f} ms, "
          f"p99 {lat['p99_ms']:.2f} ms = {lat['p99_ms'] * 1000 / disk['fdatasync_4k_p99_us']:.1f}x the disk's 4 KiB fdatasync p99.")
    print("\n### Scaling with shards (1 KiB records, 4 producers)\n")
    print("| shards | records/s | MB/s | call p99 ms | CPU-s per M records |")
    print("|---|---|---|---|---|")
    for shards, r in scaling:
        cpu = r.get("daemon_cpu_seconds_per_million_records") or 0
        print(f"| {shards} | {r['records_per_s']:.0f} | {r['mb_per_s']:.1f} | {r['call_latency']['p99_ms']:.1f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
