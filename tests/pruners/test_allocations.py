"""Layerwise allocations: counts against closed forms solved independently here, exact sums,
bounds, the uniform+ and minimum-threshold rules, and Global MP against a brute-force sort."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from onnxprune.errors import InvalidOptionError
from onnxprune.pruners.allocations.erk import erk
from onnxprune.pruners.allocations.global_ import global_
from onnxprune.pruners.allocations.igq import igq
from onnxprune.pruners.allocations.minimum_threshold import minimum_threshold
from onnxprune.pruners.allocations.uniform import uniform
from onnxprune.pruners.allocations.uniform_plus import uniform_plus
from onnxprune.pruners.registry import ALLOCATIONS, get_allocation
from tests.helpers import examples

LENET = {"fc1": (784, 300), "fc2": (300, 100), "fc3": (100, 10)}
TARGETS = (0.5, 0.9, 0.98, 0.995)
SHAPE_ONLY = (uniform, uniform_plus, erk, igq)


def _sizes(shapes):
    return {name: math.prod(shape) for name, shape in shapes.items()}


def _budget(shapes, t):
    return round(t * sum(_sizes(shapes).values()))


def _random_scores(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.random(shape) for name, shape in shapes.items()}


# --- registry -------------------------------------------------------------------------------


def test_registry_names_and_cli_spellings():
    assert {"global", "uniform", "uniform_plus", "erk", "igq"} <= set(ALLOCATIONS)
    assert get_allocation("uniform+").fn is uniform_plus
    assert get_allocation("global_magnitude").fn is global_
    assert get_allocation("erk").fn is erk
    assert "minimum_threshold" not in ALLOCATIONS  # a wrapper, not an allocation


# --- ERK ------------------------------------------------------------------------------------


def _erk_reference(shapes, t):
    """Removed weights per layer: d_l = min(1, k * sum(shape)/prod(shape)), k by brentq."""
    n = np.array([math.prod(s) for s in shapes.values()], dtype=float)
    raw = np.array([sum(s) for s in shapes.values()], dtype=float) / n
    kept = (1 - t) * n.sum()

    def excess(k):
        return np.minimum(1.0, k * raw).dot(n) - kept

    k = brentq(excess, 0.0, 1.0 / raw.min() + 1.0, xtol=1e-14, rtol=1e-15)
    return n * (1 - np.minimum(1.0, k * raw))


@pytest.mark.parametrize("t", TARGETS)
def test_erk_matches_the_closed_form_on_lenet(t):
    counts = erk(LENET, t, {})
    expected = _erk_reference(LENET, t)
    got = np.array(list(counts.values()))
    assert np.all(np.abs(got - expected) <= 1), (got, expected)
    assert sum(counts.values()) == _budget(LENET, t)


def test_erk_on_lenet_at_half_caps_the_small_layers():
    # Raw densities: fc1 1084/235200, fc2 400/30000, fc3 110/1000. Uncapped k = 133100/1594
    # gives fc2 and fc3 densities above 1, so both stay dense and fc1 takes all 133100.
    assert erk(LENET, 0.5, {}) == {"fc1": 133100, "fc2": 0, "fc3": 0}


def test_erk_conv_shapes_follow_the_kernel_formula():
    # [O, C/G, kh, kw]: d = k * (kh + kw + cin + cout) / (kh * kw * cin * cout); the depthwise
    # conv has cin = C/G = 1. Fully connected [K, N]: (K + N) / (K * N).
    shapes = {"conv": (8, 4, 3, 3), "dw": (8, 1, 3, 3), "fc": (288, 10)}
    t = 0.6
    raw = {
        "conv": (3 + 3 + 4 + 8) / (3 * 3 * 4 * 8),
        "dw": (3 + 3 + 1 + 8) / (3 * 3 * 1 * 8),
        "fc": (288 + 10) / (288 * 10),
    }
    n = {"conv": 288, "dw": 72, "fc": 2880}
    # No layer is capped at this target, so k has a closed form.
    k = (1 - t) * sum(n.values()) / sum(raw[name] * n[name] for name in n)
    assert all(k * r < 1 for r in raw.values())
    counts = erk(shapes, t, {})
    for name in shapes:
        assert abs(counts[name] - n[name] * (1 - k * raw[name])) <= 1, name
    assert sum(counts.values()) == round(t * 3240)
    # With the 3-D kernel [O, C, k] the same rule sums/multiplies all dims.
    counts_1d = erk({"c1d": (8, 4, 5), "fc": (40, 10)}, 0.5, {})
    k1 = 0.5 * 560 / (17 + 50)
    assert abs(counts_1d["c1d"] - 160 * (1 - k1 * 17 / 160)) <= 1


# --- IGQ ------------------------------------------------------------------------------------


def _igq_reference(shapes, t):
    """Removed weights per layer: d_l = 1 / (F N_l + 1), F by brentq on log F."""
    n = np.array([math.prod(s) for s in shapes.values()], dtype=float)
    kept = (1 - t) * n.sum()

    def excess(log_f):
        return np.sum(n / (math.exp(log_f) * n + 1)) - kept

    f = math.exp(brentq(excess, -60.0, 60.0, xtol=1e-15, rtol=1e-15))
    return n * (1 - 1 / (f * n + 1)), f


@pytest.mark.parametrize("t", TARGETS)
def test_igq_matches_the_closed_form_on_lenet(t):
    counts = igq(LENET, t, {})
    expected, f = _igq_reference(LENET, t)
    got = np.array(list(counts.values()))
    assert np.all(np.abs(got - expected) <= 1), (got, expected)
    assert sum(counts.values()) == _budget(LENET, t)
    # Larger layers are pruned more; every layer keeps fewer than 1/F (+1 for rounding).
    n = np.array(list(_sizes(LENET).values()))
    sparsity = got / n
    assert sparsity[0] > sparsity[1] > sparsity[2]
    assert np.all(n - got < 1 / f + 1)


# --- uniform and uniform+ -------------------------------------------------------------------


@pytest.mark.parametrize("t", TARGETS)
def test_uniform_gives_every_layer_the_target(t):
    counts = uniform(LENET, t, {})
    for name, n in _sizes(LENET).items():
        assert abs(counts[name] - t * n) < 1
    assert sum(counts.values()) == _budget(LENET, t)


CNN = {"c1": (16, 3, 3, 3), "c2": (32, 16, 3, 3), "c3": (64, 32, 3, 3), "fc": (10, 64)}
# sizes 432, 4608, 18432, 640; total 24112; everything but the first layer: 23680.


def test_uniform_plus_below_the_cap_is_uniform_after_the_first_layer():
    t = 0.5
    s = t * 24112 / 23680  # 0.509, below 0.8: the last layer gets it too
    counts = uniform_plus(CNN, t, {})
    assert counts["c1"] == 0
    for name, n in (("c2", 4608), ("c3", 18432), ("fc", 640)):
        assert abs(counts[name] - s * n) < 1
    assert sum(counts.values()) == round(t * 24112)


def test_uniform_plus_caps_the_last_layer_and_rebalances_the_middle():
    t = 0.9
    # Common s = 21700.8 / 23680 = 0.916 > 0.8, so fc is capped at 0.8 * 640 = 512 and the
    # middle layers share the rest: (21700.8 - 512) / 23040.
    s_mid = (t * 24112 - 512) / 23040
    counts = uniform_plus(CNN, t, {})
    assert counts["c1"] == 0
    assert counts["fc"] == 512
    for name, n in (("c2", 4608), ("c3", 18432)):
        assert abs(counts[name] - s_mid * n) < 1
    assert sum(counts.values()) == round(t * 24112)


def test_uniform_plus_on_lenet_says_the_highest_reachable_target():
    # fc1 (235200 of 266200 weights) is dense; at most 30000 + 800 can go: 0.115702...
    counts = uniform_plus(LENET, 0.1, {})
    # 26620 to remove, common s = 26620 / 31000 > 0.8: fc3 capped at 800, fc2 takes 25820.
    assert counts == {"fc1": 0, "fc2": 25820, "fc3": 800}
    assert uniform_plus(LENET, 0.115702, {})["fc3"] == 800
    with pytest.raises(InvalidOptionError, match=r"highest reachable target is 0\.115702"):
        uniform_plus(LENET, 0.5, {})
    with pytest.raises(InvalidOptionError, match="not reachable"):
        uniform_plus(LENET, 0.1158, {})


def test_uniform_plus_with_one_or_two_layers():
    # One layer is treated as the last: s = t up to 0.8.
    assert uniform_plus({"only": (10, 10)}, 0.5, {}) == {"only": 50}
    assert uniform_plus({"only": (10, 10)}, 0.8, {}) == {"only": 80}
    with pytest.raises(InvalidOptionError, match=r"highest reachable target is 0\.800000"):
        uniform_plus({"only": (10, 10)}, 0.85, {})
    # Two layers: first dense, the last carries all of it (120 of 150 at most).
    assert uniform_plus({"a": (5, 10), "b": (10, 10)}, 0.4, {}) == {"a": 0, "b": 60}
    with pytest.raises(InvalidOptionError, match=r"0\.533333"):
        uniform_plus({"a": (5, 10), "b": (10, 10)}, 0.6, {})


# --- Global MP ------------------------------------------------------------------------------


def _brute_force_global(shapes, t, scores):
    flat = [np.asarray(scores[name], float).reshape(-1) for name in shapes]
    everything = np.concatenate(flat)
    k = round(t * everything.size)
    if k == 0:
        return dict.fromkeys(shapes, 0), None
    threshold = np.sort(everything)[k - 1]
    order = np.argsort(everything, kind="stable")[:k]
    layer_of = np.repeat(np.arange(len(flat)), [f.size for f in flat])
    exact = np.bincount(layer_of[order], minlength=len(flat))
    return dict(zip(shapes, exact.tolist(), strict=True)), threshold


@pytest.mark.parametrize("t", (0.0, 0.3, 0.5, 0.9, 0.999))
def test_global_equals_a_brute_force_threshold(t):
    shapes = {"conv": (4, 3, 3, 3), "fc1": (108, 20), "fc2": (20, 5)}
    rng = np.random.default_rng(1)
    # Coarse values make many ties; a block of already-pruned weights scores -inf.
    scores = {name: np.round(rng.random(shape), 2) for name, shape in shapes.items()}
    scores["fc1"][:10] = -np.inf
    scores["fc2"][0, :3] = -np.inf
    expected, threshold = _brute_force_global(shapes, t, scores)
    counts = global_(shapes, t, scores)
    assert counts == expected
    if threshold is not None:
        for name in shapes:
            assert (
                np.sum(scores[name] < threshold)
                <= counts[name]
                <= np.sum(scores[name] <= threshold)
            )


def test_global_removes_the_pruned_weights_first_and_breaks_ties_by_layer_order():
    shapes = {"a": (4,), "b": (4,)}
    scores = {"a": np.array([1.0, 1.0, 5.0, -np.inf]), "b": np.array([-np.inf, 1.0, 0.5, 9.0])}
    # -inf, -inf, 0.5, then the three 1.0s in order a[0], a[1], b[1].
    assert global_(shapes, 0.25, scores) == {"a": 1, "b": 1}
    assert global_(shapes, 0.375, scores) == {"a": 1, "b": 2}
    assert global_(shapes, 0.5, scores) == {"a": 2, "b": 2}
    assert global_(shapes, 0.625, scores) == {"a": 3, "b": 2}


def test_global_rejects_missing_or_mismatched_scores():
    with pytest.raises(InvalidOptionError, match="no scores"):
        global_({"a": (2, 2)}, 0.5, {})
    with pytest.raises(InvalidOptionError, match="3 values"):
        global_({"a": (2, 2)}, 0.5, {"a": np.zeros(3)})
    with pytest.raises(InvalidOptionError, match="NaN"):
        global_({"a": (2,)}, 0.5, {"a": np.array([np.nan, 1.0])})


# --- Minimum threshold ----------------------------------------------------------------------


def test_minimum_threshold_worked_example():
    shapes = {"a": (100,), "b": (10, 10), "c": (100,), "d": (10,)}
    # total 310, sigma 0.1: keep_min = 31. d (10 <= 31) stays dense; a would keep 0 -> 69.
    # The 36 freed go to b and c in proportion 50:20 (b 75.7, c 30.3); b now keeps < 31 -> 69;
    # c takes the rest: 175 - 69 - 69 = 37.
    counts = {"a": 100, "b": 50, "c": 20, "d": 5}
    assert minimum_threshold(counts, shapes, 0.1) == {"a": 69, "b": 69, "c": 37, "d": 0}
    # Counts that respect the floor come back unchanged.
    fine = {"a": 60, "b": 50, "c": 20, "d": 0}
    assert minimum_threshold(fine, shapes, 0.1) == fine
    # At most 3 * 69 = 207 of 310 can go: 0.667741...
    with pytest.raises(InvalidOptionError, match=r"highest reachable target is 0\.667741"):
        minimum_threshold({"a": 100, "b": 100, "c": 8, "d": 0}, shapes, 0.1)


def test_minimum_threshold_rescales_the_free_layers_in_proportion():
    shapes = {"a": (1000,), "b": (1000,), "c": (2000,), "d": (4000,)}
    counts = {"a": 1000, "b": 200, "c": 300, "d": 1000}  # a collapses
    out = minimum_threshold(counts, shapes, 0.01)  # keep_min = 80
    assert out["a"] == 920
    factor = (2500 - 920) / 1500  # b, c, d share the rest at a common rescale of their counts
    for name in ("b", "c", "d"):
        assert abs(out[name] - counts[name] * factor) < 1
    assert sum(out.values()) == 2500


def test_minimum_threshold_after_global_mp_prevents_layer_collapse():
    shapes = {"a": (50, 40), "b": (40, 20), "c": (20, 3), "tiny": (2, 5)}
    scores = _random_scores(shapes, seed=3)
    scores["b"] *= 1e-3  # Global MP removes b first: it collapses at t = 0.5
    t, sigma = 0.5, 0.01
    counts = global_(shapes, t, scores)
    sizes = _sizes(shapes)
    assert counts["b"] == sizes["b"]
    out = minimum_threshold(counts, shapes, sigma)
    keep_min = math.ceil(sigma * sum(sizes.values()))  # 29
    assert sum(out.values()) == round(t * sum(sizes.values()))
    for name, n in sizes.items():
        if n <= keep_min:
            assert out[name] == 0
        else:
            assert n - out[name] >= keep_min
    assert sizes["b"] - out["b"] == keep_min


def test_minimum_threshold_rejects_bad_sigma_and_counts():
    shapes = {"a": (10,)}
    for sigma in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(InvalidOptionError, match="sigma"):
            minimum_threshold({"a": 1}, shapes, sigma)
    with pytest.raises(InvalidOptionError, match="no counts"):
        minimum_threshold({}, shapes, 0.1)
    with pytest.raises(InvalidOptionError, match="must be in"):
        minimum_threshold({"a": 11}, shapes, 0.1)


# --- targets --------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", (*SHAPE_ONLY, global_))
@pytest.mark.parametrize("bad", (1.0, 1.2, -0.1, float("nan"), "half"))
def test_bad_targets_raise(fn, bad):
    with pytest.raises(InvalidOptionError, match="must be"):
        fn(LENET, bad, _random_scores(LENET))


def test_bad_target_message_says_what_is_allowed():
    with pytest.raises(InvalidOptionError, match=r"^sparsity=1\.2 must be in \[0, 1\)$"):
        erk(LENET, 1.2, {})


@pytest.mark.parametrize("fn", SHAPE_ONLY)
def test_zero_target_removes_nothing(fn):
    assert fn(CNN, 0.0, {}) == dict.fromkeys(CNN, 0)


@pytest.mark.parametrize("fn", (uniform, erk, igq))
def test_a_budget_that_rounds_to_everything_removes_everything(fn):
    shapes = {"a": (3, 2), "b": (2, 2)}  # 10 weights, round(0.96 * 10) = 10
    assert fn(shapes, 0.96, {}) == {"a": 6, "b": 4}


# --- properties -----------------------------------------------------------------------------

shape_st = st.lists(st.integers(1, 12), min_size=1, max_size=4).map(tuple)
shapes_st = st.lists(shape_st, min_size=1, max_size=6).map(
    lambda shapes: {f"l{i}": s for i, s in enumerate(shapes)}
)
target_st = st.floats(0.0, 1.0, exclude_max=True, allow_nan=False)


def _check_counts(shapes, t, counts):
    assert list(counts) == list(shapes)
    assert sum(counts.values()) == _budget(shapes, t)
    for name, n in _sizes(shapes).items():
        assert isinstance(counts[name], int)
        assert 0 <= counts[name] <= n


@settings(max_examples=examples(60), deadline=None)
@given(shapes=shapes_st, t=target_st, seed=st.integers(0, 2**16))
def test_every_allocation_sums_exactly_within_bounds(shapes, t, seed):
    scores = _random_scores(shapes, seed)
    for method in ALLOCATIONS.values():
        if method.name == "sensitivity":  # needs measured curves: test_sensitivity_allocation.py
            continue
        try:
            counts = method.fn(shapes, t, scores)
        except InvalidOptionError:
            # Only uniform+ may refuse, and only when the target is truly out of reach.
            assert method.fn is uniform_plus
            sizes = list(_sizes(shapes).values())
            most = (
                (sum(sizes[1:-1]) + (4 * sizes[-1]) // 5) if len(sizes) > 1 else 4 * sizes[0] // 5
            )
            assert _budget(shapes, t) > most
            continue
        _check_counts(shapes, t, counts)
        if method.fn is uniform_plus:
            names, sizes = list(shapes), list(_sizes(shapes).values())
            assert counts[names[-1]] <= 0.8 * sizes[-1]
            if len(names) > 1:
                assert counts[names[0]] == 0


@settings(max_examples=examples(60), deadline=None)
@given(shapes=shapes_st, t=target_st, seed=st.integers(0, 2**16))
def test_erk_and_igq_match_their_closed_forms(shapes, t, seed):
    for fn, reference in ((erk, _erk_reference), (igq, lambda s, x: _igq_reference(s, x)[0])):
        got = np.array(list(fn(shapes, t, {}).values()))
        assert np.all(np.abs(got - reference(shapes, t)) <= 1 + 1e-6)


@settings(max_examples=examples(60), deadline=None)
@given(
    shapes=shapes_st,
    t=target_st,
    sigma=st.integers(0, 2000).map(lambda i: i / 10000),  # 4 decimals: sigma * total is exact
    seed=st.integers(0, 2**16),
)
def test_minimum_threshold_keeps_the_floor_and_the_total(shapes, t, sigma, seed):
    counts = global_(shapes, t, _random_scores(shapes, seed))
    sizes = _sizes(shapes)
    total = sum(sizes.values())
    keep_min = math.ceil(round(sigma * total, 6))
    most = sum(max(n - keep_min, 0) for n in sizes.values())
    if sum(counts.values()) > most:
        with pytest.raises(InvalidOptionError, match="highest reachable target"):
            minimum_threshold(counts, shapes, sigma)
        return
    out = minimum_threshold(counts, shapes, sigma)
    assert sum(out.values()) == sum(counts.values())
    for name, n in sizes.items():
        assert 0 <= out[name] <= n
        assert n - out[name] >= min(n, keep_min)
