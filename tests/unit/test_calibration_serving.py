"""A calibration in service: applied after the cache (raw scores cached), `model_score` and
/api/rerank calibrated, /api/explain with both, and a file for another score identity refused
at start-up naming both identities (sidecar/scoring_service.py, sidecar/wiring.py,
api/explain.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sidecar.app import create_app
from sidecar.deadline import Deadline
from sidecar.documents import make_document
from sidecar.errors import ConfigError
from sidecar.query import Query
from sidecar.scoring.base import identity_of
from sidecar.scoring.calibration import FORMAT, Calibration, load_calibration
from sidecar.scoring.minilm import MiniLMScorer
from sidecar.wiring import build_services, close_services, load_model
from tests.conftest import make_settings

# A steep logistic around the MiniLM's middling scores: far from the identity, so a raw score
# served as calibrated (or the reverse) shows.
STEEP = {"a": 20.0, "b": -12.0}


def write_calibration(path: Path, identity: str, params: dict[str, float] = STEEP) -> Path:
    body = {
        "format": FORMAT,
        "method": "platt",
        "score_identity": identity,
        "model": "all-MiniLM-L6-v2",
        "map": params,
    }
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_cache_holds_raw_scores_and_a_new_calibration_invalidates_nothing(
    tmp_path: Path, minilm: MiniLMScorer
) -> None:
    path = write_calibration(tmp_path / "cal.json", identity_of(minilm))
    services = build_services(make_settings(scorer={"calibration": str(path)}), scorer=minilm)
    calibration = load_calibration(path)
    query = Query("waterproof hiking boots")
    titles = ["Waterproof hiking boots", "Hiking socks", "Trail shoes", "Rain jacket"]
    docs = [make_document(f"d{i}", t, ["leather", "light"]) for i, t in enumerate(titles * 2)]
    docs = [make_document(f"d{i}", d.title, [f"size {i}"]) for i, d in enumerate(docs)]
    other = Calibration("platt", identity_of(minilm), "m", {"a": 3.0, "b": -1.0})

    async def run() -> tuple[Any, Any, Any]:
        try:
            scoring = services.scoring
            first = await scoring.score(query, docs, "i", Deadline.after(60))
            second = await scoring.calibrated_by(None).score(query, docs, "i", Deadline.after(60))
            third = await scoring.calibrated_by(other).score(query, docs, "i", Deadline.after(60))
            return first, second, third
        finally:
            await close_services(services, close_scorer=False)

    first, second, third = asyncio.run(run())
    assert first.cache_misses == 8 and second.cache_hits == 8 and third.cache_hits == 8
    assert first.raw_scores == second.scores == second.raw_scores == third.raw_scores
    assert first.scores == [calibration(s) for s in first.raw_scores if s is not None]
    assert first.scores != first.raw_scores and third.scores != first.scores


def test_a_calibration_for_another_identity_is_refused_at_start_naming_both(
    tmp_path: Path, minilm: MiniLMScorer
) -> None:
    path = write_calibration(tmp_path / "other.json", "0123456789abcdef")
    settings = make_settings(scorer={"calibration": str(path)})
    with pytest.raises(ConfigError) as refused:
        build_services(settings, scorer=minilm)
    message = refused.value.message
    assert "0123456789abcdef" in message and identity_of(minilm) in message and str(path) in message
    # a fresh MiniLM (not loaded: its identity is known when built) is refused just the same
    with pytest.raises(ConfigError, match="0123456789abcdef"):
        build_services(settings)


def test_a_bad_calibration_file_stops_the_start_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.json: calibration file is not JSON"):
        build_services(make_settings(scorer={"calibration": str(path)}))


def test_answers_carry_calibrated_scores_and_explain_shows_both(
    tmp_path: Path, minilm: MiniLMScorer
) -> None:
    path = write_calibration(tmp_path / "cal.json", identity_of(minilm))
    calibration = load_calibration(path)
    # raw scores on purpose: the default applies the shipped calibration (bundled)
    raw_app = create_app(
        make_settings(scorer={"calibration": None}), wait_for_model=True, scorer=minilm
    )
    app = create_app(
        make_settings(scorer={"calibration": str(path)}), wait_for_model=True, scorer=minilm
    )
    with TestClient(raw_app) as raw_client, TestClient(app) as calibrated_client:
        check_answers(raw_client, calibrated_client, calibration)


def check_answers(raw_client: Any, calibrated_client: Any, calibration: Calibration) -> None:
    body = {"query": "espresso machine", "documents": ["15 bar espresso machine", "tea kettle"]}
    raw = raw_client.post("/api/rerank", json=body).json()["results"]
    cal = calibrated_client.post("/api/rerank", json=body).json()["results"]
    assert [r["index"] for r in raw] == [r["index"] for r in cal]  # the order stays
    for r, c in zip(raw, cal, strict=True):
        # both written with 8 decimals (api.compat.WIRE_DECIMALS): the raw one's rounding
        # goes through the map's slope, the calibrated one's adds to it
        assert c["score"] == pytest.approx(calibration(r["score"]), abs=1e-7)

    search = {"query": "waterproof hiking boots", "size": 5, "explain": True}
    raw_hits = {h["id"]: h for h in raw_client.post("/search", json=search).json()["hits"]}
    for hit in calibrated_client.post("/search", json=search).json()["hits"]:
        if hit["id"] in raw_hits:
            expected = calibration(raw_hits[hit["id"]]["model_score"])
            assert hit["model_score"] == pytest.approx(expected)

    product = {"title": "Waterproof hiking boots", "selling_points": ["Vibram sole", "Red"]}
    explained = calibrated_client.post(
        "/api/explain", json={"query": "hiking boots", "product": product}
    ).json()
    plain = raw_client.post("/api/explain", json={"query": "hiking boots", "product": product})
    plain_body = plain.json()
    assert plain_body["calibration"] is None and plain_body["raw_score"] == plain_body["score"]
    assert explained["raw_score"] == pytest.approx(plain_body["score"])
    assert explained["score"] == pytest.approx(calibration(explained["raw_score"]))
    assert explained["calibration"] == calibration.version
    for fragment in explained["fragments"]:
        assert fragment["score_without"] == pytest.approx(
            calibration(fragment["raw_score_without"])
        )


async def test_an_identity_known_only_after_loading_is_checked_then(
    tmp_path: Path, minilm: MiniLMScorer
) -> None:
    """A scorer that learns its identity when it loads (Lychee: the dtype it runs) is checked
    after the load; until then nothing is refused, afterwards nothing mismatched is served."""

    class LearnsIdentityOnLoad:
        reads_images = False

        def __init__(self) -> None:
            self.model_id, self.state = minilm.model_id, type(minilm.state)(status="loading")
            self.score_identity = "before-load"

        async def load(self) -> None:
            self.score_identity = "after-load"
            self.state = type(minilm.state)(status="ready", progress=1.0)

        async def score(self, *args: Any, **kwargs: Any) -> list[float]:
            raise AssertionError("a mismatched calibration must not be served")

        async def close(self) -> None:
            return None

    path = write_calibration(tmp_path / "cal.json", "fitted-for-another")
    settings = make_settings(scorer={"kind": "lychee", "calibration": str(path)})
    scorer = LearnsIdentityOnLoad()
    services = build_services(settings, scorer=scorer)  # not refused yet: identity unknown
    try:
        with pytest.raises(ConfigError) as refused:
            await load_model(services)
        assert "fitted-for-another" in refused.value.message
        assert "after-load" in refused.value.message
        docs = [make_document("d", "boots")]
        report = await services.scoring.score(Query("boots"), docs, "i", Deadline.after(5))
        assert report.status == "fallback" and "fitted-for-another" in report.reason
    finally:
        await close_services(services, close_scorer=False)
