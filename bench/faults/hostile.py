"""Hostile bodies: a fixed list of malformed, oversized and odd bodies sent to /search,
/api/rerank, /v1/rerank, /api/explain and /products/_search of the shared embedded sidecar;
counts by status (goal: no 5xx, no dropped connection)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx

from bench.faults.common import Suite, chunks, codes, non_2xx, status_counts
from bench.faults.progress import progress
from bench.faults.report import Row

NAME = "hostile"

BIG = 25 * 1024 * 1024
S = "@S@"  # where a hostile JSON value goes in a route's template

TEMPLATES: dict[str, list[str]] = {
    "/search": [
        '{"query": @S@, "window": 20}',
        '{"query": "shoes", "window": 20, "filters": {"term": {"brand": @S@}}}',
        '{"query": "shoes", "window": 20, "filters": {"term": {@S@: "x"}}}',
        '{"query": "shoes", "window": 20, "filters": {"range": {"price": {"gte": @S@}}}}',
        '{"query": {"text": @S@}, "window": 20}',
        '{"query": "shoes", "window": @S@}',
        '{"query": "shoes", "index": @S@}',
        '{"query": "shoes", "rules": @S@}',
        '{"query": "shoes", "raw_query": {"match": {"title": @S@}}}',
    ],
    "/api/rerank": [
        '{"query": @S@, "documents": ["red running shoes", "a kettle"]}',
        '{"query": "shoes", "documents": ["red running shoes", @S@]}',
        '{"query": "shoes", "documents": [{"text": @S@}]}',
        '{"query": "shoes", "documents": ["a"], "top_n": @S@}',
    ],
    "/v1/rerank": [
        '{"query": @S@, "documents": ["red running shoes", "a kettle"]}',
        '{"query": "shoes", "documents": ["red running shoes", @S@]}',
        '{"query": "shoes", "model": @S@, "documents": ["a"]}',
        '{"query": "shoes", "documents": ["a"], "top_n": @S@}',
    ],
    "/api/explain": [
        '{"query": @S@, "product": {"title": "Red running shoes, light"}}',
        '{"query": "shoes", "product": {"title": @S@}}',
        '{"query": "shoes", "product": {"title": "Red shoes", "selling_points": @S@}}',
    ],
    "/products/_search": [
        '{"query": {"match": {"title": @S@}}}',
        '{"query": {"multi_match": {"query": @S@, "fields": ["title"]}}}',
        '{"query": {"term": {@S@: "x"}}}',
        '{"query": {"match": {"title": "shoes"}}, "size": @S@}',
        '{"query": {"match": {"title": "shoes"}}, "from": @S@}',
    ],
}

DEEP = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
HUGE_INT = b"9" * 5_000  # past Python's int-string digit limit (4300)

VALUES: dict[str, bytes] = {
    "lone surrogate \\ud800": b'"\\ud800"',
    "lone low surrogate \\udfff": b'"x \\udfff y"',
    "escaped NUL \\u0000": b'"a\\u0000b"',
    "raw NUL byte": b'"a\x00b"',
    "invalid UTF-8 bytes": b'"\xff\xfe\xc3("',
    "overlong UTF-8": b'"\xc0\xaf"',
    "number": b"123",
    "negative number": b"-1",
    "float": b"1.5",
    "bool": b"true",
    "null": b"null",
    "list": b'[1, [2, "x"]]',
    "object": b'{"x": {"y": 1}}',
    "nested 10k": DEEP,
    "1e999 (inf)": b"1e999",
    "NaN literal": b"NaN",
    "Infinity literal": b"-Infinity",
    "huge int 5000 digits": HUGE_INT,
    "long string 1 MB": b'"' + b"a" * (1024 * 1024) + b'"',
}

WHOLE: dict[str, bytes] = {
    "empty body": b"",
    "null body": b"null",
    "list body": b"[]",
    "string body": b'"shoes"',
    "truncated JSON": b'{"query": "sho',
    "invalid UTF-8 body": b"\xff\xfe\xfd",
    "nested 10k arrays body": DEEP,
    "nested 10k objects body": DEEP_OBJECT,
    "UTF-16 body": '{"query": "shoes"}'.encode("utf-16"),
    "BOM + JSON": b'\xef\xbb\xbf{"query": "shoes"}',
    "duplicate keys": b'{"query": "a", "query": 1}',
}


def cases() -> list[tuple[str, str, Any, dict[str, str]]]:
    """(route, case name, body or "chunked", headers) for every hostile case."""
    out: list[tuple[str, str, Any, dict[str, str]]] = []
    json_type = {"content-type": "application/json"}
    for route, templates in TEMPLATES.items():
        for i, template in enumerate(templates):
            for name, value in VALUES.items():
                body = template.encode().replace(S.encode(), value)
                out.append((route, f"template {i}: {name}", body, json_type))
        for name, body in WHOLE.items():
            out.append((route, name, body, json_type))
        out.append(
            (route, "wrong content-type", b'{"query": "shoes"}', {"content-type": "text/plain"})
        )
        big = b'{"query": "' + b"a" * BIG + b'"}'
        out.append((route, "25 MB body (Content-Length)", big, json_type))
        out.append((route, "25 MB chunked body", "chunked", json_type))
    return out


def run(suite: Suite) -> dict[str, Any]:
    url, _ = suite.plain_sidecar()
    progress("hostile: sending hostile bodies")
    results: list[dict[str, Any]] = []
    # bounded: the list is fixed, but never more than a few times the scenario's seconds
    stop_at = time.monotonic() + max(60.0, suite.options.seconds * 6)
    with httpx.Client(base_url=url, timeout=30) as client:
        for route, name, body, headers in cases():
            if time.monotonic() > stop_at:
                progress("hostile: time is up; the rest of the list was not sent")
                break
            started = time.perf_counter()
            r: httpx.Response | None = None
            for attempt in range(2):
                # once more on a fresh connection when the server dropped the pooled one (it
                # closes a connection after an unhandled error): a 500 must not hide the next case
                content = chunks(BIG) if body == "chunked" else body
                try:
                    r = client.post(route, content=content, headers=headers)
                    break
                except httpx.TransportError as exc:
                    if attempt == 1:
                        name = f"{name} ({type(exc).__name__})"
            status = r.status_code if r is not None else 0
            results.append(
                {
                    "route": route,
                    "case": name,
                    "status": status,
                    "ms": (time.perf_counter() - started) * 1000,
                    "body": (r.text[:300] if r is not None and status >= 500 else None),
                }
            )
        alive = client.get("/healthz").status_code == 200
    by_route = {
        route: status_counts([r for r in results if r["route"] == route]) for route in TEMPLATES
    }
    fives = [r for r in results if r["status"] >= 500]
    no_answer = [r for r in results if r["status"] == 0]
    progress(
        f"hostile: {len(results)} requests, by status "
        f"{dict(Counter(str(r['status']) for r in results))}, "
        f"{len(fives)} answered 5xx, sidecar alive: {alive}"
    )
    for case in fives:
        progress(f"hostile: {case['status']} from {case['route']} {case['case']!r}: {case['body']}")
    return {
        "requests": len(results),
        "status_counts": status_counts(results),
        "non_2xx": non_2xx(results),
        "by_route": by_route,
        "five_xx": fives,
        "no_answer": no_answer,
        "alive_after": alive,
        "passed": not fives and not no_answer and alive,
        "results": results,
    }


def rows(result: dict[str, Any]) -> list[Row]:
    return [
        Row(
            "hostile bodies",
            str(result["requests"]),
            codes(result["non_2xx"]),
            "-",
            f"{len(result['five_xx'])} x 5xx, {len(result['no_answer'])} no answer",
            result["passed"],
        )
    ]


def panel(ax: Any, result: dict[str, Any]) -> None:
    routes = list(result["by_route"])
    all_codes = sorted({c for counts in result["by_route"].values() for c in counts}, key=int)
    width = 0.8 / max(1, len(all_codes))
    for j, code in enumerate(all_codes):
        values = [result["by_route"][route].get(code, 0) for route in routes]
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(routes))]
        bars = ax.bar(xs, values, width, label=code if code != "0" else "no answer")
        ax.bar_label(bars, fontsize=6)
    ax.set_xticks(list(range(len(routes))), [r.replace("/", "/\n", 1) for r in routes], fontsize=7)
    ax.set_ylabel("responses")
    ax.set_title(f"hostile bodies by route ({result['requests']} requests)")
    ax.legend(fontsize=7)
