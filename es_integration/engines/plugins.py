"""OpenSearch plugins for the local node: `start("opensearch", ..., plugins=["ml"])` fetches their
zips from Maven Central (cached and checked like the engine zip: maven.py) and installs them with
`bin/opensearch-plugin install --batch` into the unpacked node before it starts. Installed, they
stay in the node's home, so a restart in the same state dir does not install them again; and
what the tool installed is kept in the cache too, so the next fresh state dir gets a copy.

A download that Maven or the network refuses leaves the node without the whole set (it starts
anyway) and the reason in the state (`plugins_missing`), so the tests that need them can skip
saying why; a checksum mismatch or a failed install is an error.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DownloadRefused, EngineError
from .maven import cache_dir, download

GROUP = "org.opensearch.plugin"


@dataclass(frozen=True)
class Plugin:
    artifact: str  # the Maven artifact id under org.opensearch.plugin
    name: str  # the name the node lists (`_cat/plugins`, plugin-descriptor.properties)


# `ml`: what OpenSearch's `rerank` search response processor needs to call a remote model through
# an ML Commons connector. In install order: opensearch-ml extends job-scheduler, neural-search
# (which holds the processor) extends knn.
PLUGIN_SETS: dict[str, tuple[Plugin, ...]] = {
    "ml": (
        Plugin("opensearch-job-scheduler", "opensearch-job-scheduler"),
        Plugin("opensearch-ml-plugin", "opensearch-ml"),
        Plugin("opensearch-knn", "opensearch-knn"),
        Plugin("neural-search", "opensearch-neural-search"),
    ),
}

# Node settings a plugin brings to this single development node (written only when the plugin is
# installed: the node refuses a setting no plugin declares). ML Commons refuses every predict
# call while one of its circuit breakers is open: JVM heap over 85 % (a 512m heap is), the
# machine's memory over 90 % used or under 5 GB of free disk (a shared CI box is, now and then).
# A rerank processor that gets refused falls back to the engine's order, so tests of the native
# path would fail for reasons of the machine. The same choice as disk-threshold allocation off.
NODE_SETTINGS: dict[str, dict[str, object]] = {
    "opensearch-ml": {
        "plugins.ml_commons.jvm_heap_memory_threshold": 100,  # 100: never open
        "plugins.ml_commons.native_memory_threshold": 100,
        "plugins.ml_commons.disk_free_space_threshold": "0b",
    },
}


@dataclass
class Outcome:
    """What `ensure` left in the node's home."""

    installed: list[str]
    missing: dict[str, str] = field(default_factory=dict)  # plugin name -> why it is not there
    install_s: float = 0.0  # time spent installing in this call


def set_names(sets: Sequence[str]) -> list[str]:
    """The plugin names of these sets, in install order; EngineError for an unknown set."""
    unknown = sorted(set(sets) - set(PLUGIN_SETS))
    if unknown:
        raise EngineError(
            f"unknown plugin set {', '.join(unknown)}; choose from {', '.join(PLUGIN_SETS)}"
        )
    return list(dict.fromkeys(p.name for s in sets for p in PLUGIN_SETS[s]))


def plugin_version(engine_version: str) -> str:
    """OpenSearch plugins carry the engine's version and a fourth number: 3.6.0 -> 3.6.0.0."""
    return f"{engine_version}.0"


def installed(home: Path) -> list[str]:
    """The plugins in this home, by the name the node lists them under."""
    names = []
    for descriptor in sorted((home / "plugins").glob("*/plugin-descriptor.properties")):
        for line in descriptor.read_text(encoding="utf-8").splitlines():
            if line.startswith("name="):
                names.append(line.removeprefix("name=").strip())
    return names


def node_settings(home: Path) -> dict[str, object]:
    """The opensearch.yml settings of the plugins installed in this home."""
    settings: dict[str, object] = {}
    for name in installed(home):
        settings.update(NODE_SETTINGS.get(name, {}))
    return settings


def ensure(
    sets: Sequence[str],
    engine_version: str,
    home: Path,
    env: Mapping[str, str],
    user: pwd.struct_passwd | None,
) -> Outcome:
    """Install the plugins of `sets` that this home lacks: a copy of the cache's kept install
    when it has all of them, else the downloads and one run of the plugin tool. All downloads
    come first: when one is refused, none is installed (they need each other) and each says
    why."""
    have = set(installed(home))
    wanted = [p for s in sets for p in PLUGIN_SETS[s] if p.name not in have]
    if not wanted:
        return Outcome(installed(home))
    version = plugin_version(engine_version)
    began = time.monotonic()
    if _copy_installed(home, wanted, version):
        return Outcome(installed(home), install_s=round(time.monotonic() - began, 1))
    archives: dict[Plugin, Path] = {}
    refused: dict[str, str] = {}
    for plugin in wanted:
        try:
            archives[plugin] = download(GROUP, plugin.artifact, version)
        except DownloadRefused as exc:
            refused[plugin.name] = str(exc)
    if refused:
        first = next(iter(refused.values()))
        missing = {
            p.name: refused.get(p.name, f"not installed without the others of its set ({first})")
            for p in wanted
        }
        return Outcome(installed(home), missing)
    began = time.monotonic()
    _install(home, [archives[p] for p in wanted], env, user)
    _keep_installed(home, wanted, version)
    return Outcome(installed(home), install_s=round(time.monotonic() - began, 1))


def _install(
    home: Path, archives: Sequence[Path], env: Mapping[str, str], user: pwd.struct_passwd | None
) -> None:
    """One run of the plugin tool for all of them, in order (each run is a JVM start: about
    15 s on two busy cores)."""
    _log(f"installing plugins from {', '.join(a.name for a in archives)}")
    # The engine user may not enter the cache (under /root when we run as root): the zips are
    # handed over inside the home, which that user owns.
    folder = home / "tmp"
    folder.mkdir(exist_ok=True)
    if user:
        os.chown(folder, user.pw_uid, user.pw_gid)
    staged = [folder / archive.name for archive in archives]
    for archive, target in zip(archives, staged, strict=True):
        target.unlink(missing_ok=True)
        try:
            os.link(archive, target)
        except OSError:  # another file system
            shutil.copyfile(archive, target)
    cmd = [str(home / "bin" / "opensearch-plugin"), "install", "--batch"]
    cmd += [target.as_uri() for target in staged]
    if user:
        cmd = [_runuser(), "-u", user.pw_name, "--", *cmd]
    try:
        proc = subprocess.run(
            cmd, cwd=home, env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
    finally:
        for target in staged:
            target.unlink(missing_ok=True)
    if proc.returncode != 0:
        output = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise EngineError(
            f"installing plugins into {home} failed (exit {proc.returncode}):\n{output}"
        )


# The plugin tool only adds plugins/<name>/ to a home (checked on 3.6.0: nothing in bin/ or
# config/). That folder is kept in the cache after the first install, and the next fresh node
# gets a copy (under a second for the ML set) instead of a run of the tool (half a minute).


def _installed_copy(plugin: Plugin, version: str) -> Path:
    return cache_dir() / "installed" / f"{plugin.name}-{version}"


def _copy_installed(home: Path, plugins: Sequence[Plugin], version: str) -> bool:
    """Copy the kept installs of all of `plugins` into the home; False when one is not kept."""
    copies = [_installed_copy(p, version) for p in plugins]
    if not all((c / "plugin-descriptor.properties").is_file() for c in copies):
        return False
    _log(f"plugins {', '.join(p.name for p in plugins)}: copied from {copies[0].parent}")
    for plugin, copy in zip(plugins, copies, strict=True):
        shutil.copytree(copy, home / "plugins" / plugin.name, symlinks=True, dirs_exist_ok=True)
    return True


def _keep_installed(home: Path, plugins: Sequence[Plugin], version: str) -> None:
    for plugin in plugins:
        kept = _installed_copy(plugin, version)
        if kept.is_dir():
            continue
        staging = kept.with_name(f".{kept.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(home / "plugins" / plugin.name, staging, symlinks=True)
        try:
            staging.replace(kept)
        except OSError:  # a parallel start kept it first
            shutil.rmtree(staging, ignore_errors=True)


def _runuser() -> str:
    found = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise EngineError("runuser not found")
    return found


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
