"""vLLM servers for the tests, started through the project's own commands: the arguments come
from `rerank-sidecar vllm-args` (exactly what an operator would run) and the process from
`python -m model_servers start` (the cached CPU environment). scripts/test installs that
environment and exports VLLM_PYTHON, or VLLM_UNAVAILABLE with the reason a download was refused;
without either the tests find the cache themselves or skip, saying how to install."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VllmServer:
    url: str
    model: str  # the served model name
    info: dict[str, object]  # what `model_servers start` printed (pid, log, ready_s, rss_mib)
    args: tuple[str, ...]  # what `rerank-sidecar vllm-args` printed
    state_dir: Path
    name: str

    def stop(self) -> None:
        _run(
            [
                sys.executable,
                "-m",
                "model_servers",
                "stop",
                "--name",
                self.name,
                "--state-dir",
                str(self.state_dir),
            ]
        )


def unavailable() -> str | None:
    """Why vLLM cannot run here, or None."""
    if os.environ.get("VLLM_UNAVAILABLE"):
        return os.environ["VLLM_UNAVAILABLE"]
    if os.environ.get("VLLM_PYTHON"):
        return None
    from model_servers.install import installed

    if installed():
        return None
    return (
        "vLLM's CPU environment is not installed (scripts/test installs it; or: "
        "python -m model_servers install)"
    )


def recipe_args(family: str, model: Path, *options: str) -> tuple[str, ...]:
    """The arguments `rerank-sidecar vllm-args` prints for `family`, as a shell would split them."""
    printed = _run(
        [
            sys.executable,
            "-m",
            "sidecar.cli",
            "vllm-args",
            "--family",
            family,
            "--model",
            str(model),
            *options,
        ]
    )
    return tuple(shlex.split(printed))


def serve(
    family: str, model: Path, state_dir: Path, *options: str, name: str | None = None
) -> VllmServer:
    """Start vLLM serving `model` with the recipe for `family` (`options` go to vllm-args)."""
    args = recipe_args(family, model, *options)
    name = name or family
    state_dir = Path(os.environ.get("RERANK_VLLM_STATE_DIR") or state_dir)
    printed = _run(
        [
            sys.executable,
            "-m",
            "model_servers",
            "start",
            "--model",
            str(model),
            "--name",
            name,
            "--state-dir",
            str(state_dir),
            "--",
            *args,
        ]
    )
    info = json.loads(printed)
    return VllmServer(str(info["url"]), str(info["served_model_name"]), info, args, state_dir, name)


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd[:6])} ... failed: {proc.stderr.strip()[-3000:]}")
    return proc.stdout
