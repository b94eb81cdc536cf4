#!/usr/bin/env python3
"""What security costs: produce throughput of one Sluice serving plaintext without signature checks
(`[auth] mode = "none"`) against one serving HTTPS with every signature verified (`mode = "sigv4"`,
`[tls]`), driven by the same `sluice bench produce` workload in one run.

The signed runs are what an AWS SDK sends: each PutRecords request SigV4-signed by the load client
(the SHA-256 of its body included) over TLS; the daemon verifies each signature and decrypts. The
client shares the machine's cores with the daemon, so both sides' costs are in the figures. The
two daemons alternate, ROUNDS times each, and the median of each side is compared. Usage:

    scripts/security_bench.py [--seconds 5] [--rounds 3] [--binary target/release/sluice]

Four modes, so that each cost shows: the plain daemon with an unsigned client; the plain daemon with
a client that signs (the client's share); a daemon verifying signatures over http (the daemon's
share); and one verifying them over TLS. Prints a Markdown table with each mode's throughput
against the first, and the daemon's and the load client's CPU seconds per million records.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import ssl
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from baseline import bench, free_port  # noqa: E402
KEY_ID, SECRET = "AKIDSLUICEBENCH", "sluice-bench/secret"


def certificate(directory: Path):
    """A test CA and a server certificate for 127.0.0.1 it issued (openssl)."""
    def openssl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"), "-days", "1",
            "-subj", "/CN=bench CA")
    openssl("req", *ec, "-keyout", str(directory / "key.pem"), "-out", str(directory / "csr.pem"), "-subj", "/CN=localhost")
    (directory / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n")
    openssl("x509", "-req", "-in", str(directory / "csr.pem"), "-CA", str(directory / "ca.pem"), "-CAkey",
            str(directory / "ca.key"), "-CAcreateserial", "-out", str(directory / "cert.pem"), "-days", "1",
            "-extfile", str(directory / "ext"))
    return directory / "cert.pem", directory / "key.pem", directory / "ca.pem"


def start(binary: Path, work: Path, config: str, scheme: str):
    work.mkdir(parents=True)
    (work / "sluice.toml").write_text(config)
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(work / "sluice.toml"), "--data-dir", str(work / "data"),
         "--listen", f"127.0.0.1:{port}", "--push-listen", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"{scheme}://127.0.0.1:{port}"
    context = ssl._create_unverified_context() if scheme == "https" else None
    for _ in range(300):
        try:
            with urllib.request.urlopen(endpoint + "/healthz", timeout=1, context=context):
                return proc, endpoint
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"sluice did not start ({config!r})")


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--producers", type=int, default=4)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "sluice"))
    args = ap.parse_args()
    binary = Path(args.binary)
    work = Path(tempfile.mkdtemp(prefix="sluice-security-bench-"))
    cert, key, ca = certificate(work)
    keys = f'[[auth.keys]]\naccess_key_id = "{KEY_ID}"\nsecret_access_key = "{SECRET}"\n'
    tls = f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    daemons = {
        "none": start(binary, work / "none", '[auth]\nmode = "none"\n', "http"),
        "sigv4": start(binary, work / "sigv4", '[auth]\nmode = "sigv4"\n' + keys, "http"),
        "sigv4+tls": start(binary, work / "tls", '[auth]\nmode = "sigv4"\n' + keys + tls, "https"),
    }
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_CA_BUNDLE": str(ca),
           "AWS_REGION": "us-east-1"}
    # (label, daemon, whether the client signs for real)
    modes = [
        ("plain (none, unsigned client)", "none", False),
        ("none, client signs", "none", True),
        ("sigv4, http", "sigv4", True),
        ("sigv4 + TLS", "sigv4+tls", True),
    ]
    results = {m[0]: [] for m in modes}
    try:
        for r in range(args.rounds):
            for label, daemon, signs in modes:
                proc, ep = daemons[daemon]
                run_env = {**env, "SLUICE_BENCH_SIGN": "1" if signs else "0"}
                before_daemon, before_client = cpu_seconds(proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
                out = bench(binary, "produce", "--endpoint", ep, "--stream", f"sec-{r}-{signs}", "--shards", "4",
                            "--batch", "500", "--record-size", "1024", "--producers", str(args.producers),
                            "--seconds", str(args.seconds), env=run_env)
                after_client = resource.getrusage(resource.RUSAGE_CHILDREN)
                millions = out["records_acked"] / 1e6
                out["daemon_cpu_per_million"] = (cpu_seconds(proc.pid) - before_daemon) / millions
                out["client_cpu_per_million"] = (
                    after_client.ru_utime + after_client.ru_stime - before_client.ru_utime - before_client.ru_stime
                ) / millions
                results[label].append(out)
                print(f"{label} round {r + 1}: {out['records_per_s']:.0f} records/s", file=sys.stderr)
    finally:
        for proc, _ in daemons.values():
            proc.terminate()
            proc.wait(timeout=60)

    def med(label, f):
        return statistics.median(f(x) for x in results[label])

    base = med(modes[0][0], lambda x: x["records_per_s"])
    print("| mode | records/s (median) | vs plain | MB/s | put p99 ms | daemon CPU s / M records | client CPU s / M records |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, _, _ in modes:
        rps = med(label, lambda x: x["records_per_s"])
        print(f"| {label} | {rps:.0f} | {rps / base:.3f} | {med(label, lambda x: x['mb_per_s']):.1f} | "
              f"{med(label, lambda x: x['call_latency']['p99_ms']):.2f} | "
              f"{med(label, lambda x: x['daemon_cpu_per_million']):.2f} | "
              f"{med(label, lambda x: x['client_cpu_per_million']):.2f} |")
    print()
    print(f"{args.rounds} rounds of {args.seconds} s each, alternating; 1 KiB records, PutRecords of 500, 4 shards, "
          f"{args.producers} producers; medians.")


if __name__ == "__main__":
    main()
