#!/usr/bin/env python3
"""What security costs: produce throughput of one Sluice serving plaintext without signature checks
(`[auth] mode = "none"`) against one serving HTTPS with every signature verified (`mode = "sigv4"`,
`[tls]`), driven by the same `sluice bench produce` workload in one run.

The signed runs are what an AWS SDK sends: each PutRecords request SigV4-signed by the load client
(the SHA-256 of its body included) over TLS; the daemon verifies each signature and decrypts. The
client shares the machine's cores with the daemon, so both sides' costs are in the figures. The
two daemons alternate, ROUNDS times each, and the median of each side is compared. Usage:

    scripts/security_bench.py [--seconds 5] [--rounds 3] [--binary target/release/sluice]

Prints a Markdown table with the ratio signed+TLS / plain.
"""

import argparse
import os
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
    plain_cfg = '[auth]\nmode = "none"\n'
    secure_cfg = (f'[auth]\nmode = "sigv4"\n[[auth.keys]]\naccess_key_id = "{KEY_ID}"\nsecret_access_key = "{SECRET}"\n'
                  f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n')
    plain, plain_ep = start(binary, work / "plain", plain_cfg, "http")
    secure, secure_ep = start(binary, work / "secure", secure_cfg, "https")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_CA_BUNDLE": str(ca),
           "AWS_REGION": "us-east-1"}
    results = {"plain": [], "sigv4+tls": []}
    try:
        for r in range(args.rounds):
            for name, ep in (("plain", plain_ep), ("sigv4+tls", secure_ep)):
                out = bench(binary, "produce", "--endpoint", ep, "--stream", f"sec-{r}", "--shards", "4", "--batch", "500",
                            "--record-size", "1024", "--producers", str(args.producers), "--seconds", str(args.seconds), env=env)
                results[name].append(out)
                print(f"{name} round {r + 1}: {out['records_per_s']:.0f} records/s", file=sys.stderr)
    finally:
        for p in (plain, secure):
            p.terminate()
            p.wait(timeout=60)
    med = {k: statistics.median(x["records_per_s"] for x in v) for k, v in results.items()}
    mb = {k: statistics.median(x["mb_per_s"] for x in v) for k, v in results.items()}
    p99 = {k: statistics.median(x["call_latency"]["p99_ms"] for x in v) for k, v in results.items()}
    print("| mode | records/s (median) | MB/s | put p99 ms |")
    print("| --- | --- | --- | --- |")
    for k in results:
        print(f"| {k} | {med[k]:.0f} | {mb[k]:.1f} | {p99[k]:.2f} |")
    print()
    print(f"sigv4+tls / plain: **{med['sigv4+tls'] / med['plain']:.3f}** "
          f"({args.rounds} rounds of {args.seconds} s, 1 KiB records, PutRecords of 500, 4 shards, "
          f"{args.producers} producers)")


if __name__ == "__main__":
    main()
