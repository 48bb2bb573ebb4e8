"""The real engine the engine scenarios share: a local OpenSearch (or Elasticsearch) started
with `es_integration.engines` in its own state dir, the demo catalog loaded with `rerank-sidecar
index`, a front proxy (bench.faults.proxy) on a port that stays the same across engine restarts
(the engine comes back on new ports; the proxy follows it, as a service address would), and one
sidecar process searching through that proxy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.faults.progress import progress
from bench.faults.proxy import Proxy
from bench.server import serving_process

# brand/category are keywords in the index template; their `.text` subfields are full text
SEARCH_FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class EngineFront:
    def __init__(self, kind: str, state_dir: Path) -> None:
        self.kind = kind
        self.state_dir = state_dir
        self.state: dict[str, Any] = {}
        self.proxy: Proxy | None = None
        self.sidecar_url = ""
        self.sidecar_pid = 0
        self.started_by_us = False
        self._stack = ExitStack()

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        from es_integration.engines import start, status

        for state in status(self.state_dir):
            if state["engine"] == self.kind and state.get("running"):
                raise RuntimeError(
                    f"a {self.kind} already runs from {self.state_dir} (pid {state['pid']}), not "
                    f"started by this suite: stop it (python -m es_integration.engines stop "
                    f"{self.kind} --state-dir {self.state_dir}) or give --engine-state-dir"
                )
        progress(f"engine: starting {self.kind} (state dir {self.state_dir})")
        self.started_by_us = True
        self.state = start(self.kind, self.state_dir)
        progress(
            f"engine: {self.kind} {self.state['version']} pid {self.state['pid']} on "
            f"{self.state['url']} after {self.state['startup_s']} s"
        )
        self._index()
        self.proxy = Proxy(_port(self.state["url"]))
        self._stack.callback(self.proxy.stop)
        settings = {
            "engine": {
                "kind": self.kind,
                "urls": [self.proxy.url],
                "search_fields": SEARCH_FIELDS,
            },
            "cache": {"kind": "memory"},
            "rules": {"watch": False},
        }
        progress(f"engine: starting a sidecar searching {self.kind} through {self.proxy.url}")
        self.sidecar_url, self.sidecar_pid = self._stack.enter_context(serving_process(settings))
        progress(f"engine: sidecar pid {self.sidecar_pid} on {self.sidecar_url}")

    def _index(self) -> None:
        command = [
            sys.executable,
            "-m",
            "sidecar.cli",
            "index",
            "--engine",
            self.kind,
            "--url",
            self.state["url"],
            "--recreate",
            "--no-progress",
        ]
        progress("engine: " + " ".join(["rerank-sidecar", *command[3:]]))
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"indexing failed: {done.stderr.strip()[-2000:]}")
        progress(f"engine: {done.stderr.strip().splitlines()[-1]}")

    def close(self) -> None:
        self._stack.close()
        if self.started_by_us:
            from es_integration.engines import stop

            progress(f"engine: stopping {self.kind}")
            stop(self.kind, self.state_dir)
            self.started_by_us = False

    # ------------------------------------------------------------ faults

    def kill(self) -> None:
        """SIGKILL the engine's server JVM (by the pid its start recorded) and take the front
        port down with it: new connections are refused, open ones reset."""
        pid = int(self.state["pid"])
        os.kill(pid, signal.SIGKILL)
        assert self.proxy is not None
        self.proxy.down()
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> dict[str, Any]:
        """Start the engine again on its existing data (new ports) and point the front at it;
        returns its state (startup_s: launch to yellow health)."""
        from es_integration.engines import start

        self.state = start(self.kind, self.state_dir)
        assert self.proxy is not None
        self.proxy.up(_port(self.state["url"]))
        return self.state


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
