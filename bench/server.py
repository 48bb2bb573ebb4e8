"""Run a sidecar on a free 127.0.0.1 port for benchmarks: in a thread of this process, or in
a process of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from ruamel.yaml import YAML


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: FastAPI, ready_timeout_s: float = 120.0) -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL once /readyz says ready."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"sidecar on {url} did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def serving_process(
    settings: dict[str, Any], ready_timeout_s: float = 180.0, source: Path | None = None
) -> Iterator[tuple[str, int]]:
    """Run `rerank-sidecar serve` with `settings` in its own process (so a load generator in
    this one does not share its interpreter); yields (base URL, pid) once it is ready and its
    catalog warm-up is done. `source`: another checkout whose `sidecar` package to run (an A/B
    comparison on the same machine at the same time), this one's when None."""
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="bench-sidecar-"))
    config = folder / "settings.yaml"
    with config.open("w", encoding="utf-8") as handle:
        YAML(typ="safe").dump({**settings, "port": port}, handle)
    log = (folder / "sidecar.log").open("wb")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=source,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not _ready_and_warm(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sidecar did not become ready; see {folder / 'sidecar.log'}")
            time.sleep(0.25)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _ready_and_warm(url: str) -> bool:
    try:
        r = httpx.get(f"{url}/readyz", timeout=2)
    except httpx.HTTPError:
        return False
    state = r.json().get("model", {}).get("warmup", {}).get("state")
    return r.status_code == 200 and state in ("done", "none")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")
