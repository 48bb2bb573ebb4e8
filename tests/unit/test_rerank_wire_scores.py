"""Scores as the engines' parsers read them: OpenSearch's ML Commons (json-smart) takes a number
written with more than 18 characters as a BigDecimal, which its Cohere post-process cannot cast
to Double; a page answered so keeps the engine's order in silence."""

from __future__ import annotations

import json
import random

from sidecar.api.compat import ranking
from sidecar.scoring_service import ScoreReport


def test_every_score_on_the_wire_is_a_short_double_in_the_models_order() -> None:
    rng = random.Random(7)
    scores = [rng.random() for _ in range(500)]
    scores += [0.21164274215698242, 1e-12, 1.0, 0.0]  # 19 characters as Python writes it
    ranked = ranking(ScoreReport(scores=list(scores)))
    assert sorted(i for i, _ in ranked) == list(range(len(scores)))
    written = json.dumps({"results": [{"index": i, "relevance_score": s} for i, s in ranked]})
    for result in json.loads(written)["results"]:
        text = json.dumps(result["relevance_score"])
        assert len(text) <= 18 and isinstance(result["relevance_score"], float), text
        assert abs(result["relevance_score"] - scores[result["index"]]) <= 5e-9
    # the order is the full scores' own
    assert [i for i, _ in ranked] == sorted(range(len(scores)), key=lambda i: -scores[i])
