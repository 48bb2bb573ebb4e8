"""Artifacts from Maven Central, cached and checked: the engines' integ-test-zips and the
OpenSearch plugin zips go through the same `download`.

A zip is kept in `${RERANK_ENGINE_CACHE:-~/.cache/rerank-sidecar/engines}` across runs and checked
against Maven's `.sha1` file, or against a checksum pinned here where Maven has none.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DownloadRefused, EngineError

MAVEN_URL = os.environ.get("RERANK_MAVEN_URL", "https://repo1.maven.org/maven2").rstrip("/")

# (artifact, version) -> sha1, for zips Maven Central holds without a `.sha1` (nor a pom) next
# to them.
PINNED_SHA1 = {
    # The Elasticsearch 9.x integ-test-zip: pinned after checking that lib/elasticsearch-<v>.jar
    # inside matches the checksum Maven publishes for org.elasticsearch:elasticsearch:<v>.
    ("elasticsearch", "9.5.3"): "b68fd022c00824b5406b0ed2df50b2bdb9e9bd0f",
    # The OpenSearch 3.6.0 plugins (org.opensearch.plugin, not in maven-metadata.xml, and no
    # checksum for their jars either): pinned from the first download, after checking that each
    # plugin-descriptor.properties names version 3.6.0.0 for opensearch.version 3.6.0 and that
    # the node starts with all four and lists them.
    ("opensearch-job-scheduler", "3.6.0.0"): "32b2bf420ffbd66efa06d82bbe4e387dd71c1bae",
    ("opensearch-ml-plugin", "3.6.0.0"): "5209040092476760abd056c2aa3f79cc335a7649",
    ("opensearch-knn", "3.6.0.0"): "a5341366a870baf34bc405602bbb6b6530157697",
    ("neural-search", "3.6.0.0"): "8bc15fe12b8cf7bd6bc8138e0ab0666b05940c36",
}


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "rerank-sidecar" / "engines"
    return Path(os.environ.get("RERANK_ENGINE_CACHE") or default)


def download(group: str, artifact: str, version: str) -> Path:
    """Return the cached, checksum-verified `<artifact>-<version>.zip`, downloading it (with
    progress on stderr) when missing. Raises DownloadRefused when Maven or the network refuses,
    EngineError when the file is not the one expected."""
    name = f"{artifact}-{version}.zip"
    target = cache_dir() / name
    if target.exists():
        return target
    url = f"{MAVEN_URL}/{group.replace('.', '/')}/{artifact}/{version}/{name}"
    expected = _expected_sha1(artifact, version, url)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{name}.{os.getpid()}.part")  # per-process: parallel runs don't clash
    try:
        actual = _fetch(url, part)
        if actual != expected:
            raise EngineError(f"sha1 mismatch for {url}: expected {expected}, got {actual}")
        part.chmod(0o644)
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)
    return target


def _expected_sha1(artifact: str, version: str, url: str) -> str:
    try:
        with urllib.request.urlopen(url + ".sha1", timeout=30) as resp:
            return str(resp.read().decode().split()[0].strip().lower())
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise DownloadRefused(f"cannot fetch {url}.sha1: {exc}") from exc
    except OSError as exc:  # URLError: DNS, refused, timeout
        raise DownloadRefused(f"cannot fetch {url}.sha1: {exc}") from exc
    pinned = PINNED_SHA1.get((artifact, version))
    if pinned:
        return pinned
    raise EngineError(
        f"Maven has no {url}.sha1 and no checksum is pinned for {artifact} {version}: "
        f"verify the zip by other means and add it to PINNED_SHA1 in {__file__}"
    )


def _fetch(url: str, dest: Path) -> str:
    """Stream url into dest, showing progress on stderr; return the sha1 of what was written."""
    digest = hashlib.sha1()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, dest.open("wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            _log(f"downloading {url} ({total / 2**20:.0f} MiB)")
            done, shown = 0, -1
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                shown = _progress(done, total, shown)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:  # HTTPError included
        raise DownloadRefused(f"cannot download {url}: {exc}") from exc
    except OSError as exc:  # a full disk, an unwritable cache
        raise EngineError(f"cannot download {url}: {exc}") from exc
    if total and done != total:
        raise DownloadRefused(f"download of {url} stopped at {done} of {total} bytes")
    return digest.hexdigest()


def _progress(done: int, total: int, shown: int) -> int:
    """Print progress in 10% steps (one rewritten line on a terminal); return the step shown."""
    if not total:
        return shown
    step = done * 10 // total
    if step != shown:
        end = "\n" if step == 10 or not sys.stderr.isatty() else ""
        print(f"\r  {step * 10:3d}%  {done / 2**20:6.1f} MiB", end=end, file=sys.stderr, flush=True)
    return step


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
