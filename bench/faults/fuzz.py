"""A fuzz phase: hypothesis-generated hostile bodies against every JSON route of the shared
embedded sidecar (admin routes included, with the token), `--fuzz-requests` of them from
`--seed`. Three kinds of body: structured (each route's fields, with strings of every Unicode
category, lone surrogates and NUL included, wrong types, nesting, huge and odd numbers),
mutated (a valid body's bytes cut, flipped or spliced) and raw bytes. Counts answers by route
and status; a 5xx other than the documented 503/504, or no answer at all, is a failure, kept
with its body so it can be replayed."""

from __future__ import annotations

import json
import time
from collections import Counter
from functools import partial
from typing import Any

import httpx

from bench.faults.common import DOCUMENTED_5XX, Suite, codes, non_2xx, status_counts
from bench.faults.progress import progress
from bench.faults.report import Row

NAME = "fuzz"
KEPT = 20  # failing cases kept in the report, each body cut to 2,000 characters

# A valid body per route: what the mutated kind starts from.
VALID: dict[str, dict[str, Any]] = {
    "/search": {"query": "waterproof hiking boots", "window": 20, "size": 5},
    "/api/rerank": {"query": "tent", "documents": ["2-person tent", {"text": "socks"}]},
    "/v1/rerank": {"query": "tent", "documents": ["2-person tent", "socks"], "top_n": 1},
    "/api/explain": {"query": "tent", "product": {"title": "TrailPeak tent, two doors"}},
    "/products/_search": {"query": {"match": {"title": "tent"}}, "size": 5},
    "/_search": {"query": {"multi_match": {"query": "tent", "fields": ["title"]}}},
    "/admin/rules/preview": {"rules": "version: 1\n", "queries": ["tent"], "size": 3},
    "/admin/cache/flush": {"prefix": "rr:nothing-here:"},
    "/admin/rules/reload": {},
}
# Fields of each route beyond those of its valid body, for the `one field` kind.
FIELDS: dict[str, tuple[str, ...]] = {
    "/search": (
        "filters",
        "from",
        "timeout_ms",
        "instruction",
        "index",
        "rules",
        "user_key",
        "explain",
        "raw_query",
    ),
    "/api/rerank": ("top_n", "instruction", "timeout_ms"),
    "/v1/rerank": ("model", "return_documents", "instruction"),
    "/api/explain": ("timeout_ms", "instruction"),
    "/products/_search": ("from", "sort", "_source", "aggs", "ext", "track_total_hits"),
    "/_search": ("size", "from", "ext"),
    "/admin/rules/preview": ("window", "variant"),
    "/admin/cache/flush": ("model",),
}
ADMIN = ("/admin/",)


KINDS = ("structured", "one field", "mutated", "bytes")


def strategies() -> dict[str, dict[str, Any]]:
    """Strategies of body bytes, by route and kind. `one field`: a valid body with one field
    (one of the route's own, or a new one) set to a hostile value, which gets past the outer
    checks to the code behind them."""
    from hypothesis import strategies as st

    text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
    odd_numbers = st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**30, 1e308, -0.0])
    scalar = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(),  # NaN and infinities included: sent as bare NaN / Infinity
        odd_numbers,
        text,
    )
    anything = st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)
        ),
        max_leaves=12,
    )
    query = st.one_of(
        anything,
        text,
        st.fixed_dictionaries(
            {}, optional={"text": anything, "image_url": anything, "image_base64": anything}
        ),
    )
    documents = st.lists(
        st.one_of(
            text,
            st.fixed_dictionaries(
                {}, optional={"text": anything, "image_url": text, "image": text}
            ),
        ),
        max_size=4,
    )
    window = st.one_of(st.integers(-5, 500), anything)
    drop_in = st.fixed_dictionaries(
        {},
        optional={
            "query": st.one_of(
                anything,
                st.fixed_dictionaries({"match": st.dictionaries(text, anything, max_size=2)}),
                st.fixed_dictionaries(
                    {"multi_match": st.fixed_dictionaries({"query": anything, "fields": anything})}
                ),
            ),
            "ext": st.one_of(anything, st.fixed_dictionaries({"rerank": anything})),
            "size": anything,
            "from": anything,
            "sort": anything,
            "_source": anything,
            "aggs": anything,
        },
    )
    bodies = {
        "/search": st.fixed_dictionaries(
            {"query": query},
            optional={
                "filters": st.one_of(
                    anything,
                    st.fixed_dictionaries({}, optional={"term": anything, "range": anything}),
                ),
                "from": anything,
                "size": window,
                "window": window,
                "timeout_ms": st.one_of(st.integers(-5, 40_000), anything),
                "instruction": anything,
                "index": anything,
                "rules": anything,
                "user_key": anything,
                "explain": anything,
                "raw_query": anything,
            },
        ),
        "/api/rerank": st.fixed_dictionaries(
            {"query": query, "documents": st.one_of(documents, anything)},
            optional={"top_n": anything, "instruction": anything, "timeout_ms": anything},
        ),
        "/v1/rerank": st.fixed_dictionaries(
            {"query": query, "documents": st.one_of(documents, anything)},
            optional={"model": anything, "top_n": anything, "return_documents": anything},
        ),
        "/api/explain": st.fixed_dictionaries(
            {
                "query": query,
                "product": st.one_of(
                    anything,
                    st.fixed_dictionaries(
                        {},
                        optional={"title": text, "selling_points": anything, "image_url": anything},
                    ),
                ),
            },
            optional={"timeout_ms": anything, "instruction": anything},
        ),
        "/products/_search": drop_in,
        "/_search": drop_in,
        "/admin/rules/preview": st.fixed_dictionaries(
            {},
            optional={
                "rules": st.one_of(
                    text, anything, st.just("version: 1\nblend: {model_weight: 2}\n")
                ),
                "queries": st.one_of(st.lists(text, max_size=3), anything),
                "size": anything,
                "window": anything,
                "variant": anything,
            },
        ),
        "/admin/cache/flush": st.fixed_dictionaries(
            {}, optional={"model": anything, "prefix": st.one_of(text, anything, st.just("rr:"))}
        ),
        "/admin/rules/reload": anything,
    }
    edits = st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 2)),
        min_size=1,
        max_size=4,
    )
    out: dict[str, dict[str, Any]] = {}
    for route, valid in VALID.items():
        names = sorted({*valid, *FIELDS.get(route, ()), "unknown_field"})
        out[route] = {
            "structured": bodies[route].map(encode),
            "one field": st.tuples(st.sampled_from(names), anything).map(partial(one_field, valid)),
            "mutated": edits.map(partial(mutate, encode(valid))),
            "bytes": st.binary(max_size=200),
        }
    return out


def one_field(valid: dict[str, Any], pair: tuple[str, Any]) -> bytes:
    name, value = pair
    return encode({**valid, name: value})


def encode(body: Any) -> bytes:
    """JSON as a sloppy client writes it: lone surrogates escaped, NaN/Infinity bare."""
    return json.dumps(body, allow_nan=True).encode("utf-8")


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (position, byte, how) edits: how 0 replaces the byte, 1 inserts it, 2 cuts there."""
    out = bytearray(data)
    for position, value, how in edits:
        at = position % (len(out) + 1)
        if how == 0 and at < len(out):
            out[at] = value
        elif how == 1:
            out.insert(at, value)
        else:
            del out[at:]
    return bytes(out)


def run(suite: Suite) -> dict[str, Any]:
    try:
        from hypothesis import HealthCheck, Phase, given, seed, settings
    except ImportError:
        return {"skipped": "hypothesis is not installed (pip install -e '.[dev]')"}

    url, _ = suite.plain_sidecar()
    count, chosen = suite.options.fuzz_requests, suite.options.seed
    budget_s = max(90.0, suite.options.seconds * 6)
    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    auth = {"authorization": f"Bearer {suite.admin_token}"}
    cases = strategies()
    routes = sorted(cases)
    stop_at = time.monotonic() + budget_s
    progress(
        f"fuzz: {count} hypothesis-generated requests (seed {chosen}), at most {budget_s:.0f} s"
    )

    with httpx.Client(base_url=url, timeout=60) as client:

        def post(route: str, kind: str, body: bytes) -> None:
            headers = {"content-type": "application/json"}
            if route.startswith(ADMIN):
                headers.update(auth)
            started = time.perf_counter()
            status, answer = 0, ""
            try:
                r = client.post(route, content=body, headers=headers)
                status, answer = r.status_code, r.text
            except Exception as exc:  # no answer at all: counted, and the run goes on
                answer = f"{type(exc).__name__}: {exc}"
            rec = {
                "route": route,
                "kind": kind,
                "status": status,
                "ms": (time.perf_counter() - started) * 1000,
            }
            results.append(rec)
            if status == 0 or (status >= 500 and status not in DOCUMENTED_5XX):
                failures.append(
                    {
                        **rec,
                        "body": body[:2000].decode("utf-8", "backslashreplace"),
                        "answer": answer[:500],
                    }
                )

        # One hypothesis run per (route, kind), each its share of the requests and its own
        # seed, so every route gets its share whatever hypothesis favours, and a run replays.
        pairs = [(route, kind) for kind in KINDS for route in routes]
        for i, (route, kind) in enumerate(pairs):
            share = count // len(pairs) + (1 if i < count % len(pairs) else 0)
            if share == 0 or time.monotonic() > stop_at:
                continue

            @seed(chosen * 1000 + i)
            @settings(
                max_examples=share,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(body=cases[route][kind])
            def send(body: bytes) -> None:
                if time.monotonic() <= stop_at:
                    post(route, kind, body)  # noqa: B023 (called within this iteration)

            send()
        alive = client.get("/healthz").status_code == 200
    by_route = {
        route: status_counts([r for r in results if r["route"] == route])
        for route in sorted({r["route"] for r in results})
    }
    by_kind = {kind: status_counts([r for r in results if r["kind"] == kind]) for kind in KINDS}
    five = Counter(str(r["status"]) for r in results if r["status"] >= 500)
    progress(
        f"fuzz: {len(results)} requests, by status {status_counts(results)}, 5xx {dict(five)}, "
        f"{len(failures)} undocumented 5xx or no answer, sidecar alive: {alive}"
    )
    for f in failures[:5]:
        progress(
            f"fuzz: {f['status']} from {f['route']} ({f['kind']}): {f['body'][:200]!r} "
            f"-> {f['answer'][:200]}"
        )
    return {
        "seed": chosen,
        "requests": len(results),
        "asked": count,
        "status_counts": status_counts(results),
        "non_2xx": non_2xx(results),
        "by_route": by_route,
        "by_kind": by_kind,
        "five_xx": dict(five),
        "undocumented": len(failures),
        "failures": failures[:KEPT],
        "alive_after": alive,
        "passed": not failures and alive,
        "results": results,
    }


def rows(result: dict[str, Any]) -> list[Row]:
    documented = sum(v for k, v in result["five_xx"].items() if int(k) in DOCUMENTED_5XX)
    return [
        Row(
            f"fuzz (seed {result['seed']})",
            str(result["requests"]),
            codes(result["non_2xx"]),
            "-",
            f"{result['undocumented']} x undocumented 5xx or no answer, {documented} x 503/504, "
            f"{len(result['by_route'])} routes",
            result["passed"],
        )
    ]


def panel(ax: Any, result: dict[str, Any]) -> None:
    routes = list(result["by_route"])
    all_codes = sorted({c for counts in result["by_route"].values() for c in counts}, key=int)
    bottom = [0] * len(routes)
    for code in all_codes:
        values = [result["by_route"][r].get(code, 0) for r in routes]
        ax.barh(routes, values, left=bottom, label=code if code != "0" else "no answer")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("responses")
    ax.set_title(f"fuzz: {result['requests']} generated bodies (seed {result['seed']})")
    ax.legend(fontsize=7, ncol=2)
