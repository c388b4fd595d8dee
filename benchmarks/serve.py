"""`ser serve` against `ser predict`: requests per second and p50/p95 latency of a running server
for 1 and 4 concurrent clients on 3-s clips, and of `ser predict` run as one process per file on the
same clips (what a script that shells out per file gets). Arms are interleaved round by round, so
a busy machine slows them alike. Prints the ratios.

    python benchmarks/serve.py RUN_DIR [--requests 24] [--files 6] [--rounds 2] [--clip 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
            "HF_HUB_OFFLINE": "1"}


def write_clips(folder: Path, count: int, seconds: float) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        t = np.arange(int(seconds * 16000)) / 16000
        wave = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) * (1 + np.sin(2 * np.pi * rng.uniform(2, 6) * t))
        path = folder / f"clip{k}.wav"
        sf.write(path, (wave + 0.02 * rng.standard_normal(len(t))).astype(np.float32), 16000)
        paths.append(path)
    return paths


def post(url: str, path: Path) -> float:
    boundary = "bench-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n\r\n".encode()
            + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode())
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        json.loads(response.read())
    return time.perf_counter() - started


def serve_arm(url: str, clips: list[Path], clients: int) -> tuple[float, list[float]]:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda p: post(url + "/predict", p), clips))
    return time.perf_counter() - started, latencies


def predict_arm(run: Path, clips: list[Path], out: Path) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for clip in clips:
        begun = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ser.cli", "predict", str(clip), "--run", str(run), "--out",
                        str(out / f"{clip.stem}.json")], env=env(), check=True, capture_output=True)
        latencies.append(time.perf_counter() - begun)
    return time.perf_counter() - started, latencies


def start_server(run: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "ser.cli", "serve", str(run), "--port", str(port)], env=env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/health", timeout=2).read()
            return process, url
        except OSError:
            if process.poll() is not None:
                raise SystemExit("ser serve did not start")
            time.sleep(0.2)
    raise SystemExit("ser serve did not answer /health")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--requests", type=int, default=24, help="requests per serve arm and round")
    parser.add_argument("--files", type=int, default=6, help="files per `ser predict` arm and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clip", type=float, default=3.0)
    args = parser.parse_args()
    results: dict[str, list] = {"serve, 1 client": [], "serve, 4 clients": [], "ser predict, 1 process per file": []}
    with tempfile.TemporaryDirectory() as folder:
        clips = write_clips(Path(folder), max(args.requests, args.files), args.clip)
        process, url = start_server(args.run)
        try:
            post(url + "/predict", clips[0])  # warm-up
            for _ in range(args.rounds):
                for name, arm in (("serve, 1 client", lambda: serve_arm(url, clips[: args.requests], 1)),
                                  ("ser predict, 1 process per file", lambda: predict_arm(args.run, clips[: args.files],
                                                                                         Path(folder))),
                                  ("serve, 4 clients", lambda: serve_arm(url, clips[: args.requests], 4))):
                    results[name].append(arm())
        finally:
            process.terminate()
            process.wait()
    rates = {}
    print(f"{args.clip:g}-s clips, {args.rounds} interleaved rounds, {os.cpu_count()} CPUs")
    for name, runs in results.items():
        latencies = np.concatenate([r[1] for r in runs])
        rates[name] = len(latencies) / sum(r[0] for r in runs)
        print(f"{name:32s} {rates[name]:7.2f} req/s   p50 {1000 * np.percentile(latencies, 50):7.0f} ms   "
              f"p95 {1000 * np.percentile(latencies, 95):7.0f} ms   (n={len(latencies)})")
    baseline = rates["ser predict, 1 process per file"]
    print(f"ratio serve 1 client / ser predict per file:  {rates['serve, 1 client'] / baseline:.1f}x req/s")
    print(f"ratio serve 4 clients / ser predict per file: {rates['serve, 4 clients'] / baseline:.1f}x req/s")
    print(f"ratio serve 4 clients / 1 client:             {rates['serve, 4 clients'] / rates['serve, 1 client']:.2f}x "
          "req/s (one worker thread: requests queue)")


if __name__ == "__main__":
    main()
