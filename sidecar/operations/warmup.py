"""Cache warm-up: run the most frequent queries of a query log through the pipeline before
traffic arrives, so their (query, product) scores sit in the cache.

    rerank-sidecar warm --queries log.txt --top-k 500 --concurrency 4 --rate 10 \
        --url http://sidecar:8080 --state warm.state

The log is one query per line (repeats count), or a CSV with a header naming a `query` column and
a `count` column. Queries run in process (the configured engine, model and cache: useful with
Redis) or against a running sidecar over HTTP (`--url`). Done queries are appended to the state
file, so a second run with the same file resumes where the first stopped. In process, Redis must
answer before the first query runs (`check_store`), and a query whose scores were not stored
counts as an error: the command exits non-zero rather than report a warm-up nothing kept.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sidecar.config import Settings
from sidecar.deadline import Deadline
from sidecar.errors import ConfigError
from sidecar.operations.shared_store import check_reachable
from sidecar.services import Services, params_for
from sidecar.wiring import build_cache

COUNT_COLUMNS = ("count", "n", "frequency", "freq", "hits")


@dataclass
class Result:
    cache_hits: int = 0
    cache_misses: int = 0
    error: str = ""


@dataclass
class Summary:
    queries: int = 0  # run in this invocation
    skipped: int = 0  # already done according to the state file
    pairs_scored: int = 0
    pairs_cached: int = 0
    errors: int = 0
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)

    @property
    def hit_ratio(self) -> float:
        total = self.pairs_scored + self.pairs_cached
        return self.pairs_cached / total if total else 0.0

    def text(self) -> str:
        return (
            f"warmed {self.queries - self.errors}/{self.queries} queries"
            f" ({self.skipped} skipped as done) in {self.seconds:.1f} s:"
            f" {self.pairs_scored} pairs scored, {self.pairs_cached} already cached,"
            f" {self.errors} errors"
        )


class Target(Protocol):
    """Runs one query the way production would and says how the cache did."""

    async def run(self, query: str) -> Result: ...


def read_query_log(path: Path) -> list[tuple[str, int]]:
    """(query, count) pairs, most frequent first (ties keep the file's order)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the query log: {exc.strerror}") from exc
    counts: Counter[str] = Counter()
    if Path(path).suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "query" not in columns:
            raise ConfigError(f"{path}: a CSV query log needs a 'query' column (has {columns})")
        count_col = next((c for c in COUNT_COLUMNS if c in columns), None)
        for line, row in enumerate(reader, start=2):
            clean = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            query = clean.get("query", "")
            if not query:
                continue
            try:
                counts[query] += int(float(clean[count_col])) if count_col else 1
            except ValueError as exc:
                raise ConfigError(
                    f"{path}:{line}: count {clean[count_col or '']!r} is not a number"
                ) from exc
    else:
        counts.update(q for q in (line.strip() for line in text.splitlines()) if q)
    return counts.most_common()


def top_queries(path: Path, top_k: int) -> list[str]:
    return [q for q, _ in read_query_log(path)[:top_k]]


class RateLimiter:
    """At most `rate` starts per second, evenly spaced (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


def load_state(path: Path | None) -> set[str]:
    if path is None or not path.exists():
        return set()
    done = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            done.add(json.loads(line)["query"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash: that query runs again
    return done


async def warm(
    queries: Sequence[str],
    target: Target,
    *,
    concurrency: int = 4,
    rate: float | None = None,
    state: Path | None = None,
    on_result: Callable[[Summary], None] | None = None,
) -> Summary:
    """Run `queries` through `target`, `concurrency` at a time; skip and record done ones."""
    started = time.perf_counter()
    done = load_state(state)
    todo = [q for q in queries if q not in done]
    summary = Summary(skipped=len(queries) - len(todo))
    limiter = RateLimiter(rate)
    pending: asyncio.Queue[str] = asyncio.Queue()
    for q in todo:
        pending.put_nowait(q)
    log = state.open("a", encoding="utf-8") if state is not None else None

    async def worker() -> None:
        while not pending.empty():
            query = pending.get_nowait()
            await limiter.wait()
            try:
                result = await target.run(query)
            except Exception as exc:  # one bad query must not stop the warm-up
                result = Result(error=f"{exc.__class__.__name__}: {exc}")
            summary.queries += 1
            summary.pairs_scored += result.cache_misses
            summary.pairs_cached += result.cache_hits
            if result.error:
                summary.errors += 1
                summary.failed.append(f"{query}: {result.error}")
            elif log is not None:
                log.write(json.dumps({"query": query}, ensure_ascii=False) + "\n")
                log.flush()
            if on_result is not None:
                on_result(summary)

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    finally:
        if log is not None:
            log.close()
    summary.seconds = time.perf_counter() - started
    return summary


class HttpTarget:
    """A running sidecar: POST /search with size 0 (only the scoring matters)."""

    def __init__(self, url: str, timeout_ms: int, window: int | None = None) -> None:
        import httpx

        self.url = url.rstrip("/") + "/search"
        self.body: dict[str, Any] = {"size": 0, "timeout_ms": timeout_ms}
        if window is not None:
            self.body["window"] = window
        self.client = httpx.AsyncClient(timeout=timeout_ms / 1000 + 10)

    async def run(self, query: str) -> Result:
        response = await self.client.post(self.url, json={**self.body, "query": query})
        if response.status_code != 200:
            return Result(error=f"HTTP {response.status_code}: {response.text[:200]}")
        return _result(response.json())

    async def close(self) -> None:
        await self.client.aclose()


async def check_store(settings: Settings) -> None:
    """In process with Redis: raise StoreUnwritable ("<redis url>: cannot write the score
    cache: <reason>") unless Redis answers, before any query is scored for nothing."""
    cache = build_cache(settings)
    try:
        await check_reachable(cache, settings, "the score cache")
    finally:
        await cache.close()


class InProcessTarget:
    """The configured engine, model and cache in this process."""

    def __init__(self, services: Services, timeout_ms: int, window: int | None = None) -> None:
        self.services = services
        self.timeout_ms = timeout_ms
        self.window = window

    async def run(self, query: str) -> Result:
        params = params_for(self.services, query, 0, self.window)
        deadline = Deadline.after(self.timeout_ms / 1000)
        report = (await self.services.pipeline.search(params, deadline)).report
        return _result(
            {
                "rerank_status": report.status,
                "reason": report.reason,
                "cache": report.cache_summary(),
            }
        )


def _result(body: dict[str, Any]) -> Result:
    cache = body.get("cache", {})
    result = Result(int(cache.get("hits", 0)), int(cache.get("misses", 0)))
    if body.get("rerank_status") != "ok":  # not every pair got scored: retry on resume
        result.error = f"rerank_status {body.get('rerank_status')}: {body.get('reason', '')}"
    elif cache.get("status") != "ok":
        result.error = f"cache {cache.get('status')}: scores were not stored"
    return result
