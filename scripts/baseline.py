#!/usr/bin/env python3
"""Side-by-side baseline: Sluice against kinesalite and kinesis-local, and against the disk.

Starts a release Sluice on a temporary data directory and both peers on loopback
(scripts/peers.sh), drives all three with the same `sluice bench produce` workloads in one run,
measures the disk in the same run (buffered and O_DIRECT durable appends, fdatasync latencies),
then Sluice alone: JSON against CBOR, shard scaling, put-ack latency at moderate load, reading a
backlog, restart time with a large log, and memory. Prints a Markdown report with ratios and
writes the shard-scaling plot. Usage:

    scripts/baseline.py [--seconds 5] [--data-dir DIR] [--plot docs/img/shard-scaling.svg] > report.md

The machine this runs on is shared with the load client: figures are for comparison within the
run, not absolute.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = {"kinesalite": "http://127.0.0.1:4571", "kinesis-local": "http://127.0.0.1:4572"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench(binary, *args, env=None):
    out = subprocess.run([str(binary), "bench", *args, "--json"], capture_output=True, text=True, timeout=900, env=env)
    if out.returncode != 0:
        raise SystemExit(f"bench {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Sluice:
    """A release Sluice on a data directory, started and stopped by this script."""

    def __init__(self, binary, data, config=None):
        self.binary, self.data, self.config = binary, data, config
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        """Starts the daemon; returns seconds from exec to a served /healthz."""
        cmd = [str(self.binary), "serve", "--data-dir", str(self.data), "--listen", f"127.0.0.1:{self.port}",
               "--push-listen", ""]
        if self.config:
            cmd += ["--config", str(self.config)]
        t = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while time.monotonic() - t < 300:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - t
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"sluice exited with {self.proc.returncode}")
                time.sleep(0.01)
        raise SystemExit("sluice did not become ready")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)

    def status(self, key):
        """A /proc/<pid>/status line in bytes (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0


def call(endpoint, op, body):
    req = urllib.request.Request(endpoint, data=json.dumps(body).encode(), method="POST", headers={
        "content-type": "application/x-amz-json-1.1", "x-amz-target": f"Kinesis_20131202.{op}",
        "x-amz-date": "20240101T000000Z",
        "authorization": "AWS4-HMAC-SHA256 Credential=bench/20240101/us-east-1/kinesis/aws4_request, "
                         "SignedHeaders=host, Signature=" + "0" * 64})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"{}")


def wait_active(endpoint, stream):
    for _ in range(6000):
        s = call(endpoint, "DescribeStreamSummary", {"StreamName": stream})["StreamDescriptionSummary"]
        if s["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    raise SystemExit(f"{stream} did not become ACTIVE")


def produce_bytes(binary, endpoint, stream, shards, gib, mb_per_s):
    """Fills `stream` with about `gib` GiB of 1 KiB records in one run (so every record is unique
    for the consumer's check), sized by a rate measured earlier; returns the bytes acknowledged."""
    secs = max(2, min(600, round(gib * (1 << 30) / (mb_per_s * 1e6) * 1.1)))
    r = bench(binary, "produce", "--endpoint", endpoint, "--stream", stream, "--shards", str(shards),
              "--batch", "500", "--record-size", "1024", "--producers", "4", "--seconds", str(secs))
    return r["records_acked"] * 1024


def svg_plot(points, path):
    """Throughput (records/s) against shard count, as a small line plot."""
    w, h, pad = 480, 300, 50
    xs = list(range(len(points)))
    top = max(r for _, r in points) * 1.15
    px = lambda i: pad + i * (w - 2 * pad) / max(1, len(points) - 1)
    py = lambda v: h - pad - v / top * (h - 2 * pad)
    line = " ".join(f"{px(i):.1f},{py(r):.1f}" for i, (_, r) in zip(xs, points))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
             f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="2"/>',
             f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">shards (1 KiB records, PutRecords of 500, 4 producers)</text>',
             f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">records/s</text>']
    for i, (shards, r) in zip(xs, points):
        parts.append(f'<circle cx="{px(i):.1f}" cy="{py(r):.1f}" r="3" fill="#1f77b4"/>')
        parts.append(f'<text x="{px(i):.1f}" y="{h - pad + 16}" text-anchor="middle">{shards}</text>')
        parts.append(f'<text x="{px(i):.1f}" y="{py(r) - 8:.1f}" text-anchor="middle">{r / 1000:.0f}k</text>')
    parts.append("</svg>")
    Path(path).write_text("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--data-dir", default=None, help="where Sluice and the disk baseline write (default: a temp dir)")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "sluice"))
    ap.add_argument("--plot", default=None, help="write the shard-scaling plot (SVG) here")
    ap.add_argument("--backlog-gib", type=float, default=4)
    ap.add_argument("--restart-gib", type=float, default=10)
    ap.add_argument("--many-shards", type=int, default=10000)
    ap.add_argument("--no-peers", action="store_true", help="Sluice only")
    args = ap.parse_args()
    binary = Path(args.binary)
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="sluice-baseline-"))
    sluice = Sluice(binary, data / "sluice")
    sluice.start()
    rss_idle = sluice.status("VmRSS")
    peers = {} if args.no_peers else PEERS
    if peers:
        subprocess.run([str(ROOT / "scripts" / "peers.sh"), "start"], check=True, stdout=subprocess.DEVNULL)
    endpoints = {"sluice": sluice.endpoint, **peers}
    secs = str(args.seconds)
    runs, n = {}, 0
    later = []
    try:
        disk = bench(binary, "produce", "--endpoint", sluice.endpoint, "--stream", "warmup", "--seconds", "2",
                     "--disk-baseline", str(data / "disk"))["disk_baseline"]
        log(f"disk: buffered {disk['mb_per_s']:.0f} MB/s, O_DIRECT {disk['direct_mb_per_s']:.0f} MB/s")
        for size in (1024, 100):
            for producers in (1, 4, 16):
                for target, ep in endpoints.items():
                    n += 1
                    r = bench(binary, "produce", "--endpoint", ep, "--stream", f"base-{n}", "--shards", "4",
                              "--batch", "500", "--record-size", str(size), "--producers", str(producers), "--seconds", secs)
                    runs[(target, size, producers)] = r
                    log(f"{target} {size} B x {producers}: {r['records_per_s']:.0f} records/s")
        protocols = {}
        for proto in ("json", "cbor"):
            n += 1
            extra = ["--cbor"] if proto == "cbor" else []
            protocols[proto] = bench(binary, "produce", "--endpoint", sluice.endpoint, "--stream", f"proto-{n}", "--shards", "4",
                                     "--batch", "500", "--record-size", "1024", "--producers", "4", "--seconds", secs, *extra)
            log(f"sluice {proto}: {protocols[proto]['records_per_s']:.0f} records/s")
        scaling = []
        for shards in (1, 4, 16, 64):
            n += 1
            r = bench(binary, "produce", "--endpoint", sluice.endpoint, "--stream", f"scale-{n}", "--shards", str(shards),
                      "--batch", "500", "--record-size", "1024", "--producers", "4", "--seconds", secs)
            scaling.append((shards, r))
            log(f"sluice {shards} shards: {r['records_per_s']:.0f} records/s")
        # Latency at moderate load is measured on a settled disk: the runs above leave dirty pages
        # (the write-ahead log's segment writes) that the kernel would otherwise write back during it.
        subprocess.run(["sync"], check=True)
        time.sleep(2)
        n += 1
        moderate = bench(binary, "produce", "--endpoint", sluice.endpoint, "--stream", f"moderate-{n}", "--shards", "4",
                         "--batch", "100", "--record-size", "1024", "--producers", "4", "--rate", "20000", "--seconds", secs,
                         "--disk-baseline", str(data / "disk"))
        rss_load = sluice.status("VmHWM")
        log(f"moderate: p99 {moderate['call_latency']['p99_ms']:.2f} ms")
        # A backlog, read back from the start (the daemon's page cache holds what it just wrote).
        backlog_bytes = produce_bytes(binary, sluice.endpoint, "backlog", 4, args.backlog_gib, scaling[1][1]["mb_per_s"])
        idle = 1
        c = bench(binary, "consume", "--endpoint", sluice.endpoint, "--stream", "backlog", "--idle-seconds", str(idle),
                  "--seconds", "600")
        consume = {"bytes": c["bytes"], "seconds": c["seconds"] - idle, "ok": c["ok"], "backlog": backlog_bytes}
        log(f"consume: {c['bytes'] / consume['seconds'] / 1e6:.0f} MB/s")
    finally:
        if peers:
            subprocess.run([str(ROOT / "scripts" / "peers.sh"), "stop"], stdout=subprocess.DEVNULL)
        sluice.stop()
    big = many = None
    try:
        # Restart with a large log in 64 shards.
        big = Sluice(binary, data / "restart")
        big.start()
        restart_bytes = produce_bytes(binary, big.endpoint, "restart", 64, args.restart_gib, scaling[3][1]["mb_per_s"])
        big.stop()
        restart_s = big.start()
        big.stop()
        shutil.rmtree(data / "restart", ignore_errors=True)
        log(f"restart with {restart_bytes / (1 << 30):.1f} GiB in 64 shards: {restart_s:.2f} s")
        # Many open shards: created, then the daemon restarted with them.
        cfg = data / "many.toml"
        cfg.write_text(f"[streams]\nshard_limit = {args.many_shards}\ncreate_delay = \"0ms\"\n")
        many = Sluice(binary, data / "many", cfg)
        many.start()
        t = time.monotonic()
        call(many.endpoint, "CreateStream", {"StreamName": "many", "ShardCount": args.many_shards})
        wait_active(many.endpoint, "many")
        create_s = time.monotonic() - t
        rss_many = many.status("VmRSS")
        many.stop()
        many_start_s = many.start()
        rss_many_restarted = many.status("VmRSS")
        many.stop()
        later = [restart_bytes, restart_s, create_s, rss_many, many_start_s, rss_many_restarted]
    finally:
        for d in (big, many):
            if d:
                d.stop()
        if not args.data_dir:
            shutil.rmtree(data, ignore_errors=True)

    cpu = lambda r: f"{r['daemon_cpu_seconds_per_million_records']:.2f}" if r.get("daemon_cpu_seconds_per_million_records") else "n/a"
    client = lambda r: f"{r['client_cpu_seconds_per_million_records']:.2f}" if r.get("client_cpu_seconds_per_million_records") else "n/a"
    print("### Ingest: PutRecords of 500 records, 4 shards, closed loop\n")
    if peers:
        print("| record | producers | Sluice records/s | kinesalite | kinesis-local | Sluice / kinesalite | Sluice / kinesis-local | Sluice MB/s | Sluice call p99 ms | Sluice CPU-s per M records | client CPU-s per M records |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    else:
        print("| record | producers | Sluice records/s | Sluice MB/s | Sluice call p99 ms | Sluice CPU-s per M records | client CPU-s per M records |")
        print("|---|---|---|---|---|---|---|")
    for size in (1024, 100):
        for producers in (1, 4, 16):
            s = runs[("sluice", size, producers)]
            if peers:
                k, m = runs[("kinesalite", size, producers)], runs[("kinesis-local", size, producers)]
                ratio = lambda a, b: f"{a['records_per_s'] / b['records_per_s']:.0f}x" if b["records_per_s"] > 0 else "n/a"
                print(f"| {size} B | {producers} | {s['records_per_s']:.0f} | {k['records_per_s']:.0f} | {m['records_per_s']:.0f} | "
                      f"{ratio(s, k)} | {ratio(s, m)} | {s['mb_per_s']:.1f} | {s['call_latency']['p99_ms']:.1f} | {cpu(s)} | {client(s)} |")
            else:
                print(f"| {size} B | {producers} | {s['records_per_s']:.0f} | {s['mb_per_s']:.1f} | "
                      f"{s['call_latency']['p99_ms']:.1f} | {cpu(s)} | {client(s)} |")
    print("\n### JSON and CBOR (1 KiB records, PutRecords of 500, 4 shards, 4 producers)\n")
    print("| protocol | records/s | MB/s | call p99 ms | Sluice CPU-s per M records | client CPU-s per M records |")
    print("|---|---|---|---|---|---|")
    for proto, r in protocols.items():
        print(f"| {proto} | {r['records_per_s']:.0f} | {r['mb_per_s']:.1f} | {r['call_latency']['p99_ms']:.1f} | {cpu(r)} | {client(r)} |")
    best = max([runs[("sluice", 1024, p)]["mb_per_s"] for p in (1, 4, 16)] + [r["mb_per_s"] for r in protocols.values()])
    mdisk = moderate["disk_baseline"]
    lat = moderate["call_latency"]
    print("\n### Against the disk\n")
    print(f"- Durable sequential appends, same run: buffered 500 KiB writes + fdatasync {disk['mb_per_s']:.1f} MB/s "
          f"(fdatasync p99 {disk['fdatasync_p99_us'] / 1000:.2f} ms); O_DIRECT 1 MiB appends + fdatasync "
          f"{disk['direct_mb_per_s']:.1f} MB/s (p99 {disk['direct_fdatasync_p99_us'] / 1000:.2f} ms); 4 KiB write + fdatasync "
          f"p99 {disk['fdatasync_4k_p99_us'] / 1000:.2f} ms.")
    print(f"- Best Sluice ingest of 1 KiB records above: {best:.1f} MB/s = {best / disk['direct_mb_per_s']:.0%} of the O_DIRECT "
          f"rate, {best / disk['mb_per_s']:.0%} of the buffered one.")
    print(f"- Moderate load (open loop, 20,000 records/s, PutRecords of 100 x 1 KiB, 4 producers): put-ack p50 {lat['p50_ms']:.2f} ms, "
          f"p99 {lat['p99_ms']:.2f} ms = {lat['p99_ms'] * 1000 / mdisk['fdatasync_p99_us']:.1f}x the disk's fdatasync p99 for a "
          f"write of the same size (100 KiB: {mdisk['fdatasync_p99_us'] / 1000:.2f} ms, measured just before), "
          f"{lat['p99_ms'] * 1000 / mdisk['fdatasync_4k_p99_us']:.1f}x its 4 KiB one (measured after a `sync` and 2 s of quiet).")
    print("\n### Scaling with shards (1 KiB records, 4 producers)\n")
    print("| shards | records/s | MB/s | call p99 ms | CPU-s per M records | vs 1 shard |")
    print("|---|---|---|---|---|---|")
    one = scaling[0][1]["records_per_s"]
    for shards, r in scaling:
        print(f"| {shards} | {r['records_per_s']:.0f} | {r['mb_per_s']:.1f} | {r['call_latency']['p99_ms']:.1f} | {cpu(r)} | "
              f"{r['records_per_s'] / one:.0%} |")
    if args.plot:
        svg_plot([(s, r["records_per_s"]) for s, r in scaling], args.plot)
        # As docs/benchmarks.md links it (the report goes there).
        link = os.path.relpath(Path(args.plot).resolve(), ROOT / "docs")
        print(f"\n![throughput against shard count]({link})")
    print("\n### Reading, restarting, memory\n")
    gbps = consume["bytes"] / consume["seconds"] / 1e9
    print(f"- Backlog read: {consume['bytes'] / (1 << 30):.2f} GiB written ({consume['backlog'] / (1 << 30):.2f} GiB acknowledged) "
          f"read back from TRIM_HORIZON with GetRecords (limit 10,000, every shard at once, every record verified by the "
          f"client) at {gbps:.2f} GB/s of record data, from the page cache{'' if consume['ok'] else ' (VERIFICATION FAILED)'}.")
    restart_bytes, restart_s, create_s, rss_many, many_start_s, rss_many_restarted = later
    print(f"- Restart to serving (`/healthz`) with {restart_bytes / (1 << 30):.1f} GiB of log in 64 shards: {restart_s:.2f} s.")
    print(f"- RSS: idle {rss_idle / 1e6:.0f} MB; peak under the load above {rss_load / 1e6:.0f} MB; "
          f"{args.many_shards} open shards {rss_many / 1e6:.0f} MB (created in {create_s:.1f} s), "
          f"{rss_many_restarted / 1e6:.0f} MB after a restart with them, which took {many_start_s:.2f} s to serving.")


if __name__ == "__main__":
    main()
