"""Obtain and run a local single-node Elasticsearch or OpenSearch for development and tests.

The engines come from Maven Central as `integ-test-zip` distributions (no bundled JDK), are unpacked
into a state directory, configured for 127.0.0.1 with security off, and started as an unprivileged
user when we run as root (both engines refuse to run as root). Standard library only, so this works
before any `pip install`.

Laying out (config files, the engine user) and running (start, wait for health, stop by pid)
stay in this one module: they are the steps of one lifecycle that share `EngineSpec` and the
state directory's layout (unpacked home, pid file, ports, logs). Fetching from Maven (sha1 checks,
the cache) is `maven.py`; the OpenSearch plugins installed into a home before it starts are
`plugins.py`.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import plugins as plugin_sets
from .errors import EngineError
from .maven import download

ENGINE_USER = os.environ.get("RERANK_ENGINE_USER", "rerank-engine")
HEAP = os.environ.get("RERANK_ENGINE_HEAP", "512m")
CLUSTER_NAME = "rerank-dev"
DEFAULT_STATE_DIR = ".engines"
START_TIMEOUT_S = 180.0
PORT_ATTEMPTS = 3


@dataclass(frozen=True)
class EngineSpec:
    name: str
    group: str
    default_version: str
    java_home_env: str  # the variable the start script reads to find Java
    opts_env: str
    tmpdir_env: str
    config_file: str
    # (engine major version) -> (min Java, max Java or None); the newest JDK in range is used.
    java_ranges: dict[int, tuple[int, int | None]]
    settings: dict[str, object] = field(default_factory=dict)

    def java_range(self, version: str) -> tuple[int, int | None]:
        major = int(version.split(".")[0])
        return self.java_ranges.get(major, self.java_ranges[max(self.java_ranges)])


ENGINES = {
    "elasticsearch": EngineSpec(
        name="elasticsearch",
        group="org.elasticsearch.distribution.integ-test-zip",
        default_version="9.5.3",
        java_home_env="ES_JAVA_HOME",  # ES 8+ ignores JAVA_HOME
        opts_env="ES_JAVA_OPTS",
        tmpdir_env="ES_TMPDIR",
        config_file="elasticsearch.yml",
        # 8.19 boots on 17 and 25, but 8.x before 8.18 needs the SecurityManager that JDK 24
        # removed: stay at 21 or below for all of 8.x.
        java_ranges={8: (17, 21), 9: (21, None)},
        settings={"xpack.security.enabled": False},
    ),
    "opensearch": EngineSpec(
        name="opensearch",
        group="org.opensearch.distribution.integ-test-zip",
        default_version="3.6.0",
        java_home_env="OPENSEARCH_JAVA_HOME",
        opts_env="OPENSEARCH_JAVA_OPTS",
        tmpdir_env="OPENSEARCH_TMPDIR",
        config_file="opensearch.yml",
        # 2.x needs the SecurityManager (JDK 24+ refuses to start it). The integ-test-zip has no
        # security plugin, so `plugins.security.disabled` would be rejected as an unknown setting.
        java_ranges={2: (11, 21), 3: (21, None)},
    ),
}

User = pwd.struct_passwd

JDK_DIRS = ("/usr/lib/jvm", "/opt/java", "/usr/local/lib/jvm")

# Talk to the local engine directly even when the environment sets an HTTP proxy.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Launcher processes we started in this Python process, reaped by stop() to leave no zombies.
_LAUNCHERS: dict[Path, subprocess.Popen] = {}


# ---------------------------------------------------------------- public API


def start(
    engine: str,
    state_dir: str | os.PathLike = DEFAULT_STATE_DIR,
    version: str | None = None,
    timeout: float = START_TIMEOUT_S,
    plugins: Sequence[str] = (),
) -> dict:
    """Start `engine` (downloading it if needed) and return its state: engine, version, url, pid,
    startup_s; for OpenSearch also `plugins` (installed), and `plugins_missing` (name -> why)
    when a plugin set asked for (`plugins=["ml"]`, see plugins.py) could not be downloaded.

    Idempotent: if it already runs from this state dir, its recorded state is returned.
    """
    spec = _spec(engine)
    version = version or spec.default_version
    state_dir = Path(state_dir).resolve()
    if plugins and spec.name != "opensearch":
        raise EngineError(f"plugins: only OpenSearch has plugin sets here, not {engine}")
    wanted = plugin_sets.set_names(plugins)
    running = _running_state(spec, state_dir)
    if running:
        if running["version"] != version:
            raise EngineError(
                f"{engine} {running['version']} already runs from {state_dir}; stop it first"
            )
        known = {*running.get("plugins", ()), *running.get("plugins_missing", {})}
        lacking = [name for name in wanted if name not in known]
        if lacking:
            raise EngineError(
                f"{engine} already runs from {state_dir} without {', '.join(lacking)}; "
                "stop it first"
            )
        return running

    user = ensure_user()
    java = find_java(spec, version)
    archive = download(spec.group, spec.name, version)
    _make_state_dir(state_dir, user)
    home = unpack(archive, state_dir)
    outcome = None
    if plugins:
        if user:
            _chown_tree(home, user)  # the plugin tool runs as the engine user and writes here
        outcome = plugin_sets.ensure(plugins, version, home, _engine_env(spec, home, java), user)
    state = _boot_on_free_ports(spec, version, home, java, user, timeout)
    if spec.name == "opensearch":
        state["plugins"] = plugin_sets.installed(home)
    if outcome and outcome.install_s:
        state["plugins_install_s"] = outcome.install_s
    if outcome and outcome.missing:
        state["plugins_missing"] = outcome.missing
    path = _state_file(spec, state_dir)
    path.write_text(json.dumps(state) + "\n")
    if user:
        os.chown(path, user.pw_uid, user.pw_gid)
    return state


def stop(
    engine: str, state_dir: str | os.PathLike = DEFAULT_STATE_DIR, timeout: float = 30.0
) -> bool:
    """Stop the engine recorded in the state dir: SIGTERM, wait, then SIGKILL. True if one was
    running."""
    spec = _spec(engine)
    state_dir = Path(state_dir).resolve()
    path = _state_file(spec, state_dir)
    state = _read_json(path)
    stopped = False
    if state and _is_engine_process(state["pid"], _home(state_dir, spec, state["version"])):
        group = os.getpgid(state["pid"])  # the launcher's group: runuser and, for ES, its CLI JVM
        _terminate(state["pid"], timeout)
        _reap_launcher(_home(state_dir, spec, state["version"]))
        _wait_group_gone(group)
        stopped = True
    path.unlink(missing_ok=True)
    return stopped


def status(state_dir: str | os.PathLike = DEFAULT_STATE_DIR) -> list[dict]:
    """The recorded state of every engine in the state dir, with `running` telling whether it is
    alive."""
    state_dir = Path(state_dir).resolve()
    result = []
    for spec in ENGINES.values():
        state = _read_json(_state_file(spec, state_dir))
        if state:
            home = _home(state_dir, spec, state["version"])
            result.append({**state, "running": _is_engine_process(state["pid"], home)})
    return result


# ---------------------------------------------------------------- download and unpack


def unpack(archive: Path, state_dir: Path) -> Path:
    """Unpack the zip into state_dir once, keeping the exec bits zipfile drops; return its home."""
    with zipfile.ZipFile(archive) as zf:
        top = zf.namelist()[0].split("/")[0]
        home = state_dir / top
        if (home / "bin").is_dir():
            return home
        staging = state_dir / f".{top}.{os.getpid()}.unpacking"
        shutil.rmtree(staging, ignore_errors=True)
        for info in zf.infolist():
            parts = Path(info.filename).parts
            if parts[0] != top or ".." in parts or Path(info.filename).is_absolute():
                raise EngineError(f"unexpected path {info.filename!r} in {archive}")
            zf.extract(info, staging)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                (staging / info.filename).chmod(mode)
    try:
        (staging / top).replace(home)
    except OSError:
        if not (home / "bin").is_dir():  # else a parallel start unpacked it first: fine
            raise
    shutil.rmtree(staging)
    return home


# ---------------------------------------------------------------- user, Java, ports


def ensure_user() -> User | None:
    """As root, return the unprivileged engine user, creating it if needed; otherwise None."""
    if os.geteuid() != 0:
        return None
    # Parallel starts (ES and OpenSearch in one CI job) must not run useradd at the same time:
    # concurrent useradd calls were seen to hand out ids that did not survive.
    with open(Path(tempfile.gettempdir()) / "rerank-engine-useradd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(ENGINE_USER)
        except KeyError:
            pass
        cmd = [
            _which("useradd"),
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            ENGINE_USER,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        try:
            return pwd.getpwnam(ENGINE_USER)
        except KeyError:
            raise EngineError(f"cannot create user {ENGINE_USER}: {proc.stderr.strip()}") from None


def find_java(spec: EngineSpec, version: str) -> Path:
    """The newest JDK whose major version suits this engine version."""
    low, high = spec.java_range(version)
    override = os.environ.get("RERANK_ENGINE_JAVA_HOME")
    if override:
        return Path(override)
    candidates = [Path(p) for p in [os.environ.get("JAVA_HOME")] if p]
    for root in JDK_DIRS:
        if os.path.isdir(root):
            candidates += sorted(Path(root).iterdir())
    found: dict[int, Path] = {}
    for home in candidates:
        major = _java_major(home)
        if major and low <= major <= (high or major) and (home / "bin" / "java").exists():
            found.setdefault(major, home.resolve())
    if not found:
        wanted = f"{low}..{high}" if high else f"{low}+"
        raise EngineError(
            f"{spec.name} {version} needs Java {wanted}; none found in JAVA_HOME or {JDK_DIRS} "
            "(set RERANK_ENGINE_JAVA_HOME)"
        )
    return found[max(found)]


def _java_major(home: Path) -> int | None:
    try:
        text = (home / "release").read_text()
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)', text, re.M)
    return int(match.group(1)) if match else None


def free_port() -> int:
    """A port free right now on 127.0.0.1; a race remains, which the caller handles by retrying."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- configure, launch, wait


def _boot_on_free_ports(
    spec: EngineSpec, version: str, home: Path, java: Path, user: User | None, timeout: float
) -> dict:
    for _ in range(PORT_ATTEMPTS):
        try:
            return _boot(spec, version, home, java, user, timeout)
        except _PortTaken:
            _log(f"{spec.name}: a port was taken meanwhile, retrying with other ports")
    raise EngineError(f"{spec.name}: ports kept being taken, gave up after {PORT_ATTEMPTS} tries")


class _PortTaken(Exception):
    """The engine could not bind the ports we picked: someone took them in between."""


def _boot(
    spec: EngineSpec, version: str, home: Path, java: Path, user: User | None, timeout: float
) -> dict:
    http_port = free_port()
    transport_port = free_port()
    while transport_port == http_port:
        transport_port = free_port()
    write_config(spec, home, http_port, transport_port)
    if user:
        _chown_tree(home, user)
    url = f"http://127.0.0.1:{http_port}"
    log_sizes = {path: _size(path) for path in engine_logs(home)}  # the server log is appended to
    # A killed engine leaves its pid file behind; it must not be taken for the new one's.
    _pidfile(home).unlink(missing_ok=True)
    began = time.monotonic()
    launcher = _launch(spec, home, java, user)
    try:
        pid = _wait_healthy(url, _pidfile(home), launcher, began + timeout)
    except BaseException as exc:  # includes Ctrl-C: never leave a half-started engine behind
        _kill_group(launcher)
        if not isinstance(exc, EngineError):
            raise
        output = {path: _read_from(path, offset) for path, offset in log_sizes.items()}
        if any("Address already in use" in text for text in output.values()):
            raise _PortTaken() from exc
        raise EngineError(f"{spec.name} {version}: {exc}\n{_tails(output)}") from None
    _LAUNCHERS[home] = launcher
    return {
        "engine": spec.name,
        "version": version,
        "url": url,
        "pid": pid,
        "startup_s": round(time.monotonic() - began, 1),
    }


def write_config(spec: EngineSpec, home: Path, http_port: int, transport_port: int) -> None:
    settings = {
        "cluster.name": CLUSTER_NAME,
        "node.name": spec.name,
        "network.host": "127.0.0.1",  # loopback only: also keeps bootstrap checks as warnings
        "http.port": http_port,
        "transport.port": transport_port,
        "discovery.type": "single-node",
        "path.data": str(home / "data"),
        "path.logs": str(home / "logs"),
        # A nearly full disk must not turn indices read-only or leave shards unassigned.
        "cluster.routing.allocation.disk.threshold_enabled": False,
        **spec.settings,
        **plugin_sets.node_settings(home),
    }
    lines = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    (home / "config" / spec.config_file).write_text(
        "# written by es_integration.engines\n" + "\n".join(lines) + "\n"
    )
    options = home / "config" / "jvm.options.d"
    options.mkdir(exist_ok=True)
    (options / "rerank.options").write_text(f"-Xms{HEAP}\n-Xmx{HEAP}\n")
    for name in ("data", "logs", "tmp"):
        (home / name).mkdir(exist_ok=True)


def _engine_env(spec: EngineSpec, home: Path, java: Path) -> dict[str, str]:
    """The environment of the engine and of its tools (the plugin installer)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        spec.java_home_env: str(java),
        spec.opts_env: "",  # heap comes from jvm.options.d; ignore whatever the caller had
        spec.tmpdir_env: str(home / "tmp"),  # JNA and friends unpack here; keep it in the state dir
    }


def _launch(spec: EngineSpec, home: Path, java: Path, user: User | None) -> subprocess.Popen:
    """Run the engine in the foreground of its own session; -p makes the JVM write its pid."""
    env = _engine_env(spec, home, java)
    # The soft open-files limit is raised to the hard one: runuser's PAM session resets it to 1024.
    cmd = [
        "sh",
        "-c",
        'ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"',
        str(home / "bin" / spec.name),
        "-q",
        "-p",
        str(_pidfile(home)),
    ]
    if user:
        cmd = [_which("runuser"), "-u", user.pw_name, "--", *cmd]
    log = (home / "logs" / "launch.log").open("ab")
    with log:
        # cwd matters: OpenSearch's jvm.options uses paths relative to its home (agent/, logs/).
        return subprocess.Popen(
            cmd,
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_healthy(url: str, pidfile: Path, launcher: subprocess.Popen, deadline: float) -> int:
    """Wait for yellow/green health; return the server pid. Fails fast if the launcher exits."""
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise EngineError(f"engine exited with code {launcher.returncode} during start-up")
        pid = _read_pid(pidfile)
        if pid and _healthy(url):
            return pid
        time.sleep(0.5)
    raise EngineError(f"engine not healthy at {url} after the start-up timeout")


def _healthy(url: str) -> bool:
    try:
        with _LOCAL.open(
            f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=5
        ) as resp:
            return json.load(resp).get("status") in ("green", "yellow")
    except (OSError, ValueError):  # refused, reset, 408 on timeout, half-started node
        return False


# ---------------------------------------------------------------- processes


def _terminate(pid: int, timeout: float) -> None:
    os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return
    _log(f"pid {pid} ignored SIGTERM for {timeout:.0f}s, sending SIGKILL")
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 10)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _is_engine_process(pid: int, home: Path) -> bool:
    """Alive and really our engine: guards against a recycled pid."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    marker = f"path.home={home}".encode()
    return _alive(pid) and any(arg.endswith(marker) for arg in cmdline)


def _wait_group_gone(group: int, timeout: float = 10.0) -> None:
    """Let the launcher processes exit after the server; kill them if they linger."""
    if group == os.getpgrp():
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_group(launcher: subprocess.Popen) -> None:
    """Stop everything a failed start left behind: the launcher leads its own process group."""
    try:
        os.killpg(launcher.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    launcher.wait()


def _reap_launcher(home: Path) -> None:
    launcher = _LAUNCHERS.pop(home, None)
    if launcher:
        try:
            launcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _make_state_dir(state_dir: Path, user: User | None) -> None:
    """Create the state dir for the engine user. One that already exists keeps its owner, so a
    mistaken --state-dir /tmp is not given away."""
    if user:
        _check_traversable(state_dir, user)  # before creating anything where it cannot go
    try:
        state_dir.mkdir(parents=True)
    except FileExistsError:
        pass
    else:
        if user:
            os.chown(state_dir, user.pw_uid, user.pw_gid)
            _check_traversable(state_dir, user)  # parents just made under a strict umask


def _chown_tree(root: Path, user: User) -> None:
    """Hand the engine home to its user: it writes config (keystore), data, logs, tmp, the pid."""
    os.chown(root, user.pw_uid, user.pw_gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def _check_traversable(path: Path, user: User) -> None:
    """The engine user must be able to reach the state dir (e.g. not under a 0700 /root)."""
    for parent in (path, *path.parents):
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            bit = 0o100
        elif st.st_gid == user.pw_gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            raise EngineError(
                f"user {user.pw_name} cannot enter {parent}: pick a --state-dir outside it "
                f"(e.g. under /tmp) or `chmod o+x {parent}`"
            )


# ---------------------------------------------------------------- small helpers


def _spec(engine: str) -> EngineSpec:
    try:
        return ENGINES[engine]
    except KeyError:
        raise EngineError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}") from None


def _home(state_dir: Path, spec: EngineSpec, version: str) -> Path:
    return state_dir / f"{spec.name}-{version}"


def _state_file(spec: EngineSpec, state_dir: Path) -> Path:
    return state_dir / f"{spec.name}.json"


def _pidfile(home: Path) -> Path:
    return home / "logs" / "server.pid"


def _running_state(spec: EngineSpec, state_dir: Path) -> dict | None:
    state = _read_json(_state_file(spec, state_dir))
    if state and _is_engine_process(state["pid"], _home(state_dir, spec, state["version"])):
        return state
    return None


def _read_json(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _tails(output: dict[Path, str], lines: int = 40) -> str:
    return "\n".join(
        f"--- {path} (last {lines} lines of this start)\n" + "\n".join(text.splitlines()[-lines:])
        for path, text in output.items()
        if text
    )


def engine_logs(home: Path) -> list[Path]:
    """The files worth reading when a start fails: the launcher's output and the server log."""
    return [home / "logs" / "launch.log", home / "logs" / f"{CLUSTER_NAME}.log"]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _which(tool: str) -> str:
    found = shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin:" + os.environ.get("PATH", ""))
    if not found:
        raise EngineError(f"{tool} not found")
    return found


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
