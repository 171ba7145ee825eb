import numpy as np
import pytest

from evaluation import metrics as m


def test_ndcg_wikipedia_example():
    # https://en.wikipedia.org/wiki/Discounted_cumulative_gain (linear gain): 0.785
    assert m.ndcg_at_k([3, 2, 3, 0, 1, 2], 6, [3, 3, 3, 2, 2, 2, 1, 0]) == pytest.approx(0.785, abs=5e-4)


@pytest.mark.parametrize(
    "fn",
    [
        lambda r: m.ndcg_at_k(r, 3),
        lambda r: m.recall_at_k(r, 3, 2),
        lambda r: m.hit_rate_at_k(r, 3),
        lambda r: m.mrr_at_k(r, 3),
        lambda r: m.average_precision_at_k(r, 3, 2),
    ],
)
def test_perfect_is_one_and_no_hits_is_zero(fn):
    assert fn(np.array([1, 1, 0, 0])) == pytest.approx(1.0)
    assert fn(np.array([0, 0, 0, 1, 1])) == 0.0


def test_hand_computed_values():
    r = [0, 1, 0, 1]
    assert m.precision_at_k(r, 4) == 0.5
    assert m.mrr_at_k(r, 4) == 0.5
    assert m.recall_at_k(r, 2, 2) == 0.5
    assert m.average_precision_at_k(r, 4, 2) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m.ndcg_at_k(r, 4) == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3)))


def test_beyond_accuracy_metrics_at_their_extremes_and_by_hand():
    assert m.catalogue_coverage([[0, 1], [2, 3]], 4) == 1.0
    assert m.catalogue_coverage([[0], [0]], 4) == 0.25
    assert m.gini_exposure([[0, 1], [1, 0]], 2) == pytest.approx(0.0)  # equal exposure
    assert m.gini_exposure([[0]] * 10, 1000) == pytest.approx(0.999)  # one item gets everything
    assert m.intra_list_diversity([1, 2, 3]) == 1.0 and m.intra_list_diversity([5, 5, 5]) == 0.0
    assert m.intra_list_diversity([1, 1, 2, 2]) == pytest.approx(1 - 4 / 12)
    assert m.novelty([7], {7: 100}, 100) == 0.0  # everyone knows it
    assert m.novelty([7, 8], {7: 50, 8: 25}, 100) == pytest.approx((1 + 2) / 2)
