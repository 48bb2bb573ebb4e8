"""Hot reload under load: a burst of requests while the rules file is rewritten many times.

Version k boosts every scored hit by a multiplier of its own, so a response's final/blended ratio
names the rules it ran with; each response must match, on every hit, the version it reports.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sidecar.rules import parse_rules

TOKEN = {"Authorization": "Bearer t"}


def version_text(k: int) -> str:
    return (
        "version: 1\n"
        "blend: {model_weight: 1, engine_weight: 0}\n"
        "drop: {below_model_score: null}\n"
        f"boosts: [{{name: v{k}, when: {{field: model_score, gte: 0}}, "
        f"multiply: {1 + (k + 1) / 100}}}]\n"
    )


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # what a ConfigMap update or an editor's save-as does


@pytest.mark.slow
def test_every_response_is_consistent_with_exactly_one_rules_version(client_factory, tmp_path):
    path = tmp_path / "rules.yaml"
    write_atomically(path, version_text(0))
    expected = {
        parse_rules(version_text(k)).version: (1 + (k + 1) / 100, f"v{k}") for k in range(40)
    }
    c = client_factory(
        admin_token="t", rules={"path": str(path), "watch": True, "watch_interval_s": 0.01}
    )
    c.post("/search", json={"query": "camping stove", "window": 30})  # warm the score cache

    stop = threading.Event()
    rejected = 0

    def rewrite() -> None:
        nonlocal rejected
        for k in range(1, 40):
            if k % 10 == 0:  # now and then a broken file: rejected, the last good stays live
                write_atomically(path, "version: 1\nboosts: [{name: x}]\n")
                rejected += c.post("/admin/rules/reload", headers=TOKEN).status_code == 422
            write_atomically(path, version_text(k))
            if k % 3 == 0:
                c.post("/admin/rules/reload", headers=TOKEN)
            time.sleep(0.01)
        stop.set()

    def burst() -> list[dict]:
        out = []
        while not stop.is_set():
            response = c.post(
                "/search",
                json={"query": "camping stove", "window": 30, "size": 30, "explain": True},
            )
            assert response.status_code == 200, response.text
            out.append(response.json())
        return out

    writer = threading.Thread(target=rewrite)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(burst) for _ in range(4)]
        writer.start()
        writer.join()
        responses = [r for f in futures for r in f.result()]

    versions = set()
    for body in responses:
        m, name = expected[body["rules_version"]]
        versions.add(body["rules_version"])
        assert body["rerank_status"] == "ok" and len(body["hits"]) == 30
        for hit in body["hits"]:
            ex = hit["explain"]
            assert ex["final_score"] == pytest.approx(ex["blended_score"] * m, rel=1e-9)
            assert [r["rule"] for r in ex["rules"]] == [name]
    assert rejected == 3
    assert len(responses) >= 20 and len(versions) >= 3, (len(responses), len(versions))
    assert c.post("/admin/rules/reload", headers=TOKEN).status_code == 200
    final = c.get("/admin/rules", headers=TOKEN).json()
    assert expected[final["version"]][1] == "v39" and final["last_errors"] == []
