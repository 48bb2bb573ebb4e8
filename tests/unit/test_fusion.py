"""Fusing a hybrid first stage's legs (sidecar.backends.fusion): RRF order, ties, weights, a
product found by one leg only, the linear option."""

from __future__ import annotations

import pytest

from sidecar.backends.base import Hit, LegRank
from sidecar.backends.fusion import linear, rrf


def hits(*ids: str, scores: list[float] | None = None) -> list[Hit]:
    scores = scores or [float(len(ids) - i) for i in range(len(ids))]
    return [Hit(id=i, score=s, source={"id": i}) for i, s in zip(ids, scores, strict=True)]


def test_rrf_sums_the_reciprocal_ranks_of_both_legs() -> None:
    fused = rrf({"lexical": hits("a", "b", "c"), "vector": hits("c", "b", "d")}, k=60)
    # b: 1/62 + 1/62 beats a: 1/61 and c: 1/63 + 1/61
    assert [h.id for h in fused] == ["c", "b", "a", "d"]
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61)
    assert fused[1].score == pytest.approx(2 / 62)


def test_a_product_in_one_leg_keeps_that_legs_place_and_source() -> None:
    fused = rrf({"lexical": hits("a"), "vector": hits("z")})
    by_id = {h.id: h for h in fused}
    assert by_id["z"].legs == {"vector": LegRank(1, 1.0)}
    assert by_id["a"].legs == {"lexical": LegRank(1, 1.0)}
    assert by_id["z"].source == {"id": "z"}


def test_ties_go_to_the_lexical_leg_first_then_by_rank() -> None:
    # a and z share rank 1 in one leg each: equal RRF scores, the lexical leg's comes first
    fused = rrf({"lexical": hits("a", "b"), "vector": hits("z", "y")})
    assert [h.id for h in fused] == ["a", "z", "b", "y"]
    again = rrf({"lexical": hits("a", "b"), "vector": hits("z", "y")})
    assert [h.id for h in again] == [h.id for h in fused]


def test_weights_tip_the_order_toward_a_leg() -> None:
    legs = {"lexical": hits("a", "b"), "vector": hits("z", "y")}
    assert [h.id for h in rrf(legs, {"lexical": 1.0, "vector": 2.0})][:2] == ["z", "y"]
    # weight 0: the leg's products still come (after), but they add nothing
    zero = rrf(legs, {"vector": 0.0})
    assert [h.id for h in zero] == ["a", "b", "z", "y"]
    assert zero[2].score == 0.0


def test_a_product_twice_in_one_leg_counts_once_at_its_better_place() -> None:
    fused = rrf({"lexical": hits("a", "a", "b")}, k=1)
    assert [h.id for h in fused] == ["a", "b"]
    assert fused[0].legs["lexical"].rank == 1
    assert fused[0].score == pytest.approx(1 / 2)


def test_the_same_id_in_two_indexes_is_two_products() -> None:
    one = Hit("x", 1.0, {}, index="i1")
    two = Hit("x", 1.0, {}, index="i2")
    assert len(rrf({"lexical": [one], "vector": [two]})) == 2


def test_linear_scales_each_leg_by_its_best() -> None:
    legs = {
        "lexical": hits("a", "b", scores=[20.0, 10.0]),
        "vector": hits("b", "c", scores=[0.9, 0.45]),
    }
    fused = linear(legs)
    assert [h.id for h in fused] == ["b", "a", "c"]  # b: 0.5 + 1.0
    assert fused[0].score == pytest.approx(1.5)
    assert fused[2].score == pytest.approx(0.5)


def test_k_must_be_positive_and_empty_legs_fuse_to_nothing() -> None:
    with pytest.raises(ValueError):
        rrf({"lexical": hits("a")}, k=0)
    assert rrf({"lexical": [], "vector": []}) == []
    assert linear({"lexical": []}) == []
