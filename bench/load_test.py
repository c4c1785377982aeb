"""Bounded load test of `cli.py serve` on loopback: N concurrent uploads, then slow uploads, then a report.

    .venv/bin/python bench/load_test.py [--clients 20] [--slow 5] [--slow-kbps 20] [--clip PATH] [--ensemble FILE]

Starts the server as a subprocess on a free loopback port. First it sends N uploads at once from N threads
and prints successes, 503s (with Retry-After and the reason), other errors and latency percentiles. Then
it starts `--slow` uploads crawling in at `--slow-kbps` KB/s and, while they are all in progress, one normal
upload, which must get 200 (uploads hold no inference slot until they are complete). Last, the server's
peak memory (VmHWM) and the files left in its upload directory (must be none). Not a timed test.
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def upload(url: str, clip: Path) -> tuple[int, float, str, str]:
    """(status, seconds, Retry-After, error message) of one upload of `clip` at full speed."""
    started = time.perf_counter()
    with open(clip, "rb") as handle:
        response = httpx.post(f"{url}/api/v1/classify", files={"file": (clip.name, handle, "video/mp4")},
                              timeout=600)
    message = response.json().get("error", {}).get("message", "") if response.status_code != 200 else ""
    return response.status_code, time.perf_counter() - started, response.headers.get("retry-after", ""), message


def slow_upload(url: str, clip: Path, kb_per_second: float) -> tuple[int, float]:
    """(status, seconds) of one upload of `clip` sent at about `kb_per_second`, 1 KB at a time."""
    boundary = "slow-upload-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{clip.name}"\r\n'
            "Content-Type: video/mp4\r\n\r\n").encode() + clip.read_bytes() + f"\r\n--{boundary}--\r\n".encode()

    def chunks():
        for at in range(0, len(body), 1024):
            yield body[at : at + 1024]
            time.sleep(1 / kb_per_second)

    started = time.perf_counter()
    response = httpx.post(f"{url}/api/v1/classify", content=chunks(), timeout=600,
                          headers={"content-type": f"multipart/form-data; boundary={boundary}",
                                   "content-length": str(len(body))})
    return response.status_code, time.perf_counter() - started


def health(url: str) -> dict:
    return httpx.get(f"{url}/api/v1/health", timeout=30).json()


def slow_scenario(url: str, clip: Path, slow: int, kb_per_second: float) -> None:
    """`slow` crawling uploads in progress, then one normal upload: it must get 200, not 503."""
    with ThreadPoolExecutor(slow) as pool:
        crawling = [pool.submit(slow_upload, url, clip, kb_per_second) for _ in range(slow)]
        deadline = time.monotonic() + 60
        while health(url)["uploads"] < slow and time.monotonic() < deadline:
            time.sleep(0.1)
        state = health(url)
        status, seconds, _, message = upload(url, clip)
        print(f"slow uploads: {state['uploads']} in progress at {kb_per_second:g} KB/s, inference slots in use "
              f"{state['busy']} of {state['capacity']}; a normal upload meanwhile: {status} in {seconds:.1f} s "
              f"{message}{'' if status == 200 else '  <-- expected 200'}")
        results = [future.result() for future in crawling]
    statuses = [r[0] for r in results]
    print("the slow uploads, once complete: " + ", ".join(f"{code} x{statuses.count(code)}" for code in
                                                         sorted(set(statuses))) +
          f" (each took {min(r[1] for r in results):.0f}-{max(r[1] for r in results):.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--clip", type=Path, default=None, help="default: a generated 3-second face clip")
    parser.add_argument("--ensemble", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--queue", type=int, default=4)
    parser.add_argument("--slow", type=int, default=5, help="slow uploads in the second part (0: skip it)")
    parser.add_argument("--slow-kbps", type=float, default=20.0, help="their rate in KB/s")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="load-test-"))
    clip = args.clip
    if clip is None:
        from pipeline.sample import write_sample_clip

        clip = write_sample_clip(scratch / "sample.mp4", seconds=3.0)
    uploads = scratch / "uploads"
    port = free_port()
    command = [sys.executable, str(ROOT / "cli.py"), "serve", "--port", str(port), "--upload-dir", str(uploads),
               "--workers", str(args.workers), "--queue", str(args.queue)]
    if args.ensemble:
        command += ["--ensemble", str(args.ensemble)]
    server_log = scratch / "server.log"  # a file, not a pipe nobody reads while the server runs
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(server_log, "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            raise SystemExit("the server did not start: " + server_log.read_text()[-2000:])
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(lambda _: upload(url, clip), range(args.clients)))
        wall = time.perf_counter() - started
        statuses = [r[0] for r in results]
        ok_latency = np.array([r[1] for r in results if r[0] == 200])
        busy = [r for r in results if r[0] == 503]
        reasons = sorted({r[3] for r in busy})
        print(f"clients: {args.clients} concurrent uploads of {clip.name} ({clip.stat().st_size / 1e6:.1f} MB); "
              f"server: {args.workers} worker(s), queue {args.queue}")
        print(f"200 OK: {statuses.count(200)}   503 busy: {len(busy)} (Retry-After: "
              f"{sorted({r[2] for r in busy}) or '-'})   other: {len(statuses) - statuses.count(200) - len(busy)}")
        for reason in reasons:
            print(f"  503 x{sum(r[3] == reason for r in busy)}: {reason}")
        if ok_latency.size:
            p50, p90, p99 = np.percentile(ok_latency, [50, 90, 99])
            print(f"latency of successes (s): p50 {p50:.2f}  p90 {p90:.2f}  p99 {p99:.2f}  max {ok_latency.max():.2f}")
        print(f"wall time: {wall:.1f} s")
        if args.slow:
            slow_scenario(url, clip, args.slow, args.slow_kbps)
        print(f"server peak RSS: {peak_rss_mb(server.pid):.0f} MB")
        leftovers = sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []
        print(f"files left in the upload directory: {len(leftovers)} {leftovers if leftovers else ''}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
