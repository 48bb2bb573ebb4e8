"""The engines' official clients, each in a folder of its own, and a way to run one against a URL.

Python: only one version of a package fits in the venv, so every client major is installed with
`pip install --target` into `${RERANK_CLIENT_CACHE:-~/.cache/rerank-sidecar/clients}/<name>`
(once; later runs find it there, like the engine downloads) and runs in a subprocess whose
PYTHONPATH puts that folder first (`client_driver.py`).

JavaScript: `npm install` of tests/clients/js/package.json into `<cache>/js-<hash>` and
`node tests/clients/js/driver.mjs`. Java: `mvn compile` of tests/clients/java into
`<cache>/java-<hash>` (the jars in ~/.m2) and `java rerank.Driver`. The hash is of the files
that pin and build the driver, so a change rebuilds and an unchanged tree reuses the build. All
drivers read the same plan and print the same answer shape.
"""

from __future__ import annotations

import fcntl
import hashlib
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
# name -> the client's kind; the versions are pinned in tests/clients/{js,java}
JS_CLIENTS = {"js-elasticsearch": "elasticsearch", "js-opensearch": "opensearch"}
JAVA_CLIENTS = {"java-elasticsearch": "elasticsearch", "java-opensearch": "opensearch"}
ALL_CLIENTS = {**{n: k for n, (k, _) in CLIENTS.items()}, **JS_CLIENTS, **JAVA_CLIENTS}
DRIVER = Path(__file__).with_name("client_driver.py")
CLIENTS_DIR = Path(__file__).parents[1] / "clients"
JS_DIR = CLIENTS_DIR / "js"
JAVA_DIR = CLIENTS_DIR / "java"
JAVA_HOMES = ["/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/temurin-25-jdk-amd64"]


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


def missing_tool(name: str) -> str | None:
    """Why client `name` cannot run here (a tool not installed), else None."""
    if name in JS_CLIENTS:
        return None if shutil.which("node") and shutil.which("npm") else "node and npm"
    if name in JAVA_CLIENTS:
        return None if shutil.which("mvn") and java_home() else "mvn and a JDK 17+"
    return None


def java_home() -> str | None:
    for home in [os.environ.get("JAVA_HOME", ""), *JAVA_HOMES]:
        if home and Path(home, "bin", "java").is_file():
            return home
    return None


def build(prefix: str, sources: list[Path], make: Any) -> Path:
    """`<cache>/<prefix>-<hash of sources>`, made once by make(staging folder)."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{prefix}-{digest}"
    with (root / f".{prefix}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".done").is_file():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{prefix}.", dir=root))
        try:
            make(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        (staging / ".done").write_text(digest, encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def checked(command: list[str], what: str, **kwargs: Any) -> None:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, **kwargs
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
        )


def install_js() -> Path:
    def make(staging: Path) -> None:
        shutil.copy(JS_DIR / "package.json", staging / "package.json")
        npm = ["npm", "install", "--prefix", str(staging), "--no-audit", "--no-fund"]
        checked([*npm, "--omit=dev", "--loglevel=error"], "npm install")

    return build("js", [JS_DIR / "package.json"], make) / "node_modules"


def install_java() -> tuple[str, str]:
    """(java, classpath) of the built Java driver."""
    home = java_home()
    assert home is not None
    env = {**os.environ, "JAVA_HOME": home}

    def make(staging: Path) -> None:
        mvn = ["mvn", "-B", "-q", "-f", str(JAVA_DIR / "pom.xml"), f"-Ddriver.build={staging}"]
        goals = ["compile", "dependency:build-classpath"]
        checked([*mvn, *goals, f"-Dmdep.outputFile={staging / 'classpath.txt'}"], "mvn", env=env)

    sources = [JAVA_DIR / "pom.xml", *sorted((JAVA_DIR / "src").rglob("*.java"))]
    built = build("java", sources, make)
    classpath = (built / "classpath.txt").read_text(encoding="utf-8").strip()
    return str(Path(home, "bin", "java")), f"{built / 'classes'}{os.pathsep}{classpath}"


def run(name: str, url: str, plan: list[dict[str, Any]]) -> dict[str, Any]:
    """What client `name` answered to each call of `plan` against `url`."""
    kind = ALL_CLIENTS[name]
    # no proxy between the client and 127.0.0.1
    env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
    if name in JS_CLIENTS:
        env["CLIENT_MODULES"] = str(install_js())
        command = ["node", str(JS_DIR / "driver.mjs"), kind, url]
    elif name in JAVA_CLIENTS:
        java, classpath = install_java()
        command = [java, "-cp", classpath, "rerank.Driver", kind, url]
    else:
        env["PYTHONPATH"] = str(install(name))  # the client's folder first
        command = [sys.executable, str(DRIVER), kind, url]
    done = subprocess.run(
        command,
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
