"""The engines' official Python clients, each major version in a folder of its own, and a way
to run one against a URL.

Only one version of a package fits in the venv, so every client major is installed with
`pip install --target` into `${RERANK_CLIENT_CACHE:-~/.cache/rerank-sidecar/clients}/<name>`
(once; later runs find it there, like the engine downloads) and runs in a subprocess whose
PYTHONPATH puts that folder first (`client_driver.py`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# name -> (the client's kind, its pip requirement)
CLIENTS: dict[str, tuple[str, str]] = {
    "elasticsearch8": ("elasticsearch", "elasticsearch>=8,<9"),
    "elasticsearch9": ("elasticsearch", "elasticsearch>=9,<10"),
    "opensearch-py2": ("opensearch", "opensearch-py>=2,<3"),
    "opensearch-py3": ("opensearch", "opensearch-py>=3,<4"),
}
DRIVER = Path(__file__).with_name("client_driver.py")


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "rerank-sidecar" / "clients"
    return Path(os.environ.get("RERANK_CLIENT_CACHE", default))


def install(name: str) -> Path:
    """The folder holding client `name` and its dependencies, installed on first use."""
    _, requirement = CLIENTS[name]
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    stamp = target / ".requirement"
    with (root / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once install it once
        if stamp.is_file() and stamp.read_text(encoding="utf-8") == requirement:
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        done = subprocess.run(
            [*command, "--no-compile", "--target", str(staging), requirement],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"pip could not install {requirement}:\n{done.stderr[-3000:]}")
        (staging / ".requirement").write_text(requirement, encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def run(name: str, url: str, plan: list[dict[str, Any]]) -> dict[str, Any]:
    """What client `name` answered to each call of `plan` against `url`."""
    kind, _ = CLIENTS[name]
    # the client's folder first; no proxy between the client and 127.0.0.1
    env = {**os.environ, "PYTHONPATH": str(install(name)), "NO_PROXY": "*", "no_proxy": "*"}
    done = subprocess.run(
        [sys.executable, str(DRIVER), kind, url],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} driver failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
