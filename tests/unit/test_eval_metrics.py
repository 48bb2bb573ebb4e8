"""Ranking metrics and the statistics behind the evaluation report."""

import math

import pytest

from sidecar.evaluation.metrics import (
    bootstrap_ci,
    gain,
    mrr_best,
    ndcg_at,
    paired_permutation_p,
    recall_at,
)

LABELS = {"a": 4, "b": 3, "c": 1, "d": 2}


def test_gain_matches_the_data_sets_definition() -> None:
    assert [gain(x) for x in (1, 2, 3, 4)] == [0, 1, 3, 7]


def test_ndcg_is_one_for_the_ideal_order_and_lower_otherwise() -> None:
    assert ndcg_at(["a", "b", "d", "c"], LABELS) == pytest.approx(1.0)
    worst = ndcg_at(["c", "d", "b", "a"], LABELS)
    expected_dcg = 0 / math.log2(2) + 1 / math.log2(3) + 3 / math.log2(4) + 7 / math.log2(5)
    ideal = 7 / math.log2(2) + 3 / math.log2(3) + 1 / math.log2(4)
    assert worst == pytest.approx(expected_dcg / ideal)


def test_ndcg_cuts_at_k_and_treats_unjudged_as_irrelevant() -> None:
    assert ndcg_at(["x", "a"], LABELS, k=1) == 0.0
    assert ndcg_at(["a"], {"a": 1, "b": 1}) == 0.0  # nothing to gain: defined as 0


def test_mrr_of_the_first_best_labelled_product() -> None:
    assert mrr_best(["c", "b", "a"], LABELS) == pytest.approx(1 / 3)
    assert mrr_best(["c"], LABELS) == 0.0


def test_recall_counts_labels_above_threshold() -> None:
    assert recall_at(["a", "c"], LABELS, threshold=2.5, k=10) == 0.5
    assert math.isnan(recall_at(["a"], {"a": 1}, threshold=2.5))


def test_bootstrap_interval_brackets_the_mean() -> None:
    values = [0.2, 0.4, 0.6, 0.8] * 25
    low, high = bootstrap_ci(values)
    assert low < 0.5 < high and high - low < 0.15


def test_paired_test_separates_real_gains_from_noise() -> None:
    base = [0.5 + 0.01 * (i % 7) for i in range(60)]
    assert paired_permutation_p(base, [b + 0.05 for b in base]) < 0.001
    noisy = [b + (0.01 if i % 2 else -0.01) for i, b in enumerate(base)]
    assert paired_permutation_p(base, noisy) > 0.5
    assert paired_permutation_p(base, base) == 1.0
