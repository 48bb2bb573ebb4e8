"""Admin routes on the embedded default: auth, rules state/reload/preview, variants, cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.rules.store import DEFAULT_RULES

TOKEN = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(DEFAULT_RULES.read_text())
    return path


@pytest.fixture
def admin(client_factory, rules_file):
    return client_factory(admin_token="s3cret", rules={"path": str(rules_file), "watch": False})


def test_admin_routes_are_off_without_a_token(client) -> None:
    for method, path in [
        ("get", "/admin/rules"),
        ("post", "/admin/rules/reload"),
        ("get", "/admin/cache/stats"),
    ]:
        response = getattr(client, method)(path, headers=TOKEN)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic s3cret", "s3cret"])
def test_admin_routes_need_the_bearer_token(admin, header) -> None:
    headers = {"Authorization": header} if header else {}
    response = admin.get("/admin/rules", headers=headers)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert admin.get("/admin/rules", headers=TOKEN).status_code == 200


def test_bad_file_is_rejected_with_line_and_last_good_rules_stay_live(admin, rules_file) -> None:
    live = admin.get("/admin/rules", headers=TOKEN).json()
    assert live["version"].startswith("default@") and live["last_errors"] == []

    rules_file.write_text(
        "version: 1\nboosts:\n  - name: x\n    when: {field: sales}\n    add: 1\n"
    )
    rejected = admin.post("/admin/rules/reload", headers=TOKEN)
    assert rejected.status_code == 422
    body = rejected.json()
    assert body["error"] == "rules_invalid" and body["live_version"] == live["version"]
    assert body["problems"] == [
        f"{rules_file}:4:5: boosts[0].when: a condition needs one of eq, in, gte, lte, exists"
    ]
    state = admin.get("/admin/rules", headers=TOKEN).json()
    assert state["version"] == live["version"] and state["last_errors"] == body["problems"]
    search = admin.post("/search", json={"query": "tent", "size": 3})
    assert search.status_code == 200 and search.json()["rules_version"] == live["version"]

    rules_file.write_text("version: 1\ndrop: {below_model_score: 0.5}\n")
    ok = admin.post("/admin/rules/reload", headers=TOKEN).json()
    assert ok["status"] == "reloaded" and ok["previous"] == live["version"]
    assert ok["version"] != live["version"]
    assert admin.get("/admin/rules", headers=TOKEN).json()["last_errors"] == []
    after = admin.post("/search", json={"query": "tent", "size": 3}).json()
    assert after["rules_version"] == ok["version"]


def test_variants_are_named_in_rules_version(admin, rules_file) -> None:
    rules_file.write_text(
        "version: 1\nvariants:\n  - {name: half, share: 0.5, drop: {below_model_score: 0.9}}\n"
    )
    digest = admin.post("/admin/rules/reload", headers=TOKEN).json()["version"].split("@")[1]
    by_name = admin.post("/search", json={"query": "tent", "rules": "half"}).json()
    assert by_name["rules_version"] == f"half@{digest}"
    assert all(h["model_score"] >= 0.9 for h in by_name["hits"])
    seen = {
        admin.post("/search", json={"query": "tent", "size": 1, "user_key": f"u{i}"}).json()[
            "rules_version"
        ]
        for i in range(12)
    }
    assert seen == {f"half@{digest}", f"default@{digest}"}
    again = admin.post("/search", json={"query": "tent", "size": 1, "user_key": "u3"}).json()
    assert again["rules_version"] in seen
    unknown = admin.post("/search", json={"query": "tent", "rules": "nope"})
    assert unknown.status_code == 422 and unknown.json()["field"] == "rules"
    state = admin.get("/admin/rules", headers=TOKEN).json()
    assert state["rules"]["variants"][0]["drop"]["below_model_score"] == 0.9
    shares = state["variants"]
    assert shares == [{"name": "default", "share": 0.5}, {"name": "half", "share": 0.5}]


def test_preview_shows_both_orders_with_rules_fired(admin) -> None:
    live = admin.post("/search", json={"query": "hiking boots", "size": 5}).json()
    last = live["hits"][4]["id"]
    # the live (bundled) rules plus a pin: only the pin moves (the bundled rules bury
    # accessories and boost best-sellers, which a bare `version: 1` would not)
    candidate = (
        DEFAULT_RULES.read_text()
        + f"pins: [{{name: hero, query: {{is: hiking boots}}, id: {last}, position: 1}}]\n"
    )
    response = admin.post(
        "/admin/rules/preview",
        headers=TOKEN,
        json={"rules": candidate, "queries": ["Hiking  boots"], "size": 5},
    )
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert result["query"] == "Hiking boots"
    rows = result["rows"]
    assert [r["live"]["id"] for r in rows] == [h["id"] for h in live["hits"]]
    assert rows[0]["candidate"]["id"] == last and rows[0]["moved"] == 4
    assert rows[0]["candidate"]["rules"] == ["pin:hero position 1"]
    assert [r["candidate"]["id"] for r in rows[1:]] == [h["id"] for h in live["hits"][:4]]
    assert result["candidate_version"].startswith("default@")
    assert result["candidate_version"] != result["live_version"]

    bad = admin.post(
        "/admin/rules/preview", headers=TOKEN, json={"rules": "version: 3\n", "queries": ["x"]}
    )
    assert bad.status_code == 422 and bad.json()["problems"] == [
        "<candidate>:1:1: version: version must be 1"
    ]


def test_explain_shows_pin_and_bury_effects(admin, rules_file) -> None:
    rules_file.write_text("version: 1\ndrop: {below_model_score: null}\n")
    admin.post("/admin/rules/reload", headers=TOKEN)
    plain = admin.post("/search", json={"query": "tent", "size": 60, "window": 60}).json()
    # the lowest product in stock: pinned first, it is the one hit above the buried that
    # the pin (not its stock) put there
    last = [h for h in plain["hits"] if h["source"]["in_stock"]][-1]["id"]
    rules_file.write_text(
        "version: 1\n"
        "drop: {below_model_score: null}\n"
        f"pins: [{{name: hero, query: {{glob: 'tent*'}}, id: {last}, position: 1}}]\n"
        "buries: [{name: no-stock, when: {field: in_stock, eq: false}}]\n"
    )
    assert admin.post("/admin/rules/reload", headers=TOKEN).status_code == 200
    body = admin.post(
        "/search", json={"query": "tent", "size": 60, "window": 60, "explain": True}
    ).json()
    top = body["hits"][0]
    assert top["id"] == last
    assert {"rule": "hero", "kind": "pin", "effect": "position 1"} in top["explain"]["rules"]
    assert top["score"] == top["explain"]["final_score"]  # a pin moves a hit, not its score
    kinds = [[r["kind"] for r in h["explain"]["rules"]] for h in body["hits"]]
    buried = [i for i, k in enumerate(kinds) if "bury" in k]
    assert buried and all(
        not h["source"]["in_stock"]
        for h in body["hits"]
        if h["id"] != last and body["hits"].index(h) in buried
    )
    assert buried == list(range(len(kinds) - len(buried), len(kinds)))  # all after the rest
    assert all(h["source"]["in_stock"] for i, h in enumerate(body["hits"]) if i not in buried)


def test_cache_stats_and_flush_by_model(admin) -> None:
    admin.post("/search", json={"query": "sleeping bag", "window": 30})
    admin.post("/search", json={"query": "sleeping bag", "window": 30})
    stats = admin.get("/admin/cache/stats", headers=TOKEN).json()
    assert stats["kind"] == "memory" and stats["hits"] >= 30 and stats["misses"] >= 30
    assert stats["breaker"] == "closed" and stats["errors"] == 0

    bad = admin.post("/admin/cache/flush", headers=TOKEN, json={"prefix": "other:"})
    assert bad.status_code == 422 and bad.json()["field"] == "prefix"
    both = admin.post("/admin/cache/flush", headers=TOKEN, json={"prefix": "rr:", "model": "m"})
    assert both.status_code == 422

    flushed = admin.post("/admin/cache/flush", headers=TOKEN, json={"model": "all-MiniLM-L6-v2"})
    assert flushed.json()["deleted"] >= 30 and flushed.json()["prefix"] == "rr:all-MiniLM-L6-v2:"
    cold = admin.post("/search", json={"query": "sleeping bag", "window": 30}).json()
    assert cold["cache"]["hits"] == 0 and cold["cache"]["misses"] == 30
