"""Dominance, hypervolume in a fixed frame (log10 params), its running history, and reading a stored reference
point."""
from __future__ import annotations

import numpy as np
import pytest

from autopeft.pareto import (hypervolume, hypervolume_frame, hypervolume_history, nondominated_ranks, pareto_mask,
                             reference_from_attrs)

NAMES = ["score", "params"]
DIRECTIONS = ["maximize", "minimize"]


def test_nondominated_ranks_peel_fronts():
    values = np.array([[0.9, 10], [0.8, 5], [0.7, 20], [0.6, 30], [0.9, 10]])
    assert nondominated_ranks(values, DIRECTIONS).tolist() == [0, 0, 1, 2, 0]


def test_pareto_mask_is_the_first_front():
    rng = np.random.default_rng(0)
    values = np.round(rng.uniform(0, 1, (600, 3)), 1)  # ties and duplicates; more rows than one block of the mask
    directions = ["maximize", "minimize", "minimize"]
    np.testing.assert_array_equal(pareto_mask(values, directions), nondominated_ranks(values, directions) == 0)


def test_hypervolume_of_known_boxes():
    # reference score 0.5, params 1e4 (log10 4); ideal taken from the points: score 0.9, params 1e2 (log10 2)
    frame = hypervolume_frame(np.array([[0.9, 1e3], [0.7, 1e2]]), NAMES, DIRECTIONS, [0.5, 1e4])
    assert not frame.derived
    # in the normalised box: (0.9, 1e3) -> (0, 0.5); (0.7, 1e2) -> (0.5, 0): union area 0.75
    assert hypervolume(np.array([[0.9, 1e3], [0.7, 1e2]]), frame) == pytest.approx(0.75)
    assert hypervolume(np.array([[0.9, 1e3]]), frame) == pytest.approx(0.5)
    assert hypervolume(np.array([[0.4, 1e3]]), frame) == 0.0  # worse than the reference score
    assert hypervolume(np.zeros((0, 2)), frame) == 0.0


def test_degenerate_box_holds_nothing():
    frame = hypervolume_frame(np.array([[0.5, 1e3]]), NAMES, DIRECTIONS, [0.5, 1e4])
    assert hypervolume(np.array([[0.5, 1e3]]), frame) == 0.0  # not strictly better than the reference score


@pytest.mark.parametrize("m", [2, 3])
def test_history_equals_recomputing_every_prefix(m):
    rng = np.random.default_rng(m)
    values = rng.uniform(0, 1, (40, m))
    values[:, 0] = np.round(values[:, 0], 1)  # ties and duplicates
    values[:, 1] = 10 ** (values[:, 1] * 5)
    names, directions = ["score", "params", "memory"][:m], ["maximize", "minimize", "minimize"][:m]
    frame = hypervolume_frame(values, names, directions)
    history = hypervolume_history(values, frame)
    brute = [hypervolume(values[: k + 1], frame) for k in range(len(values))]
    np.testing.assert_allclose(history, brute)
    assert np.all(np.diff(history) >= 0) and 0 < history[-1] <= 1


@pytest.mark.parametrize("stored,expected", [
    ({"score": 0.5, "params": 1e6}, [0.5, 1e6]),
    ([0.5, 1e6], [0.5, 1e6]),
    ({"values": {"params": 1e6, "score": 0.5}}, [0.5, 1e6]),
    ({"score": 0.5}, None),         # incomplete
    (["a", "b"], None),
    (None, None),
])
def test_reference_from_attrs(stored, expected):
    got = reference_from_attrs(stored, NAMES)
    assert (got is None) if expected is None else got.tolist() == expected
