"""Packed patterns (``_bits``) and merged unit classes (``_classes``) against plain boolean math.

A ``BitMatrix`` packed in either layout (in x out, or out x in as Gemm's ``transB`` stores it)
must push, pull and count exactly as the dense boolean matrix does. Merging channels with equal
maps must give the same convolution, adjoint and weight sums as running over every channel.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxprune.graph import _bits, _classes
from onnxprune.graph.conv_geometry import contract_backward, contract_forward
from onnxprune.graph.transfers import Contract
from onnxprune.weights import WeightSource
from tests.helpers import examples


@settings(max_examples=examples(60), deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    transposed=st.booleans(),
    alive=st.sampled_from([0.7, 1.0]),  # 1.0: every unit alive (read in place, unmasked)
)
def test_bit_matrix_equals_the_dense_pattern(seed, rows, cols, transposed, alive) -> None:
    rng = np.random.default_rng(seed)
    dense = rng.random((rows, cols)) < rng.random()  # in x out
    packed, count = _bits.BitMatrix.nonzero(dense.T if transposed else dense, transposed=transposed)
    assert packed.shape == (rows, cols) and count == int(dense.sum())
    weight = np.where(
        dense.T if transposed else dense,
        rng.standard_normal(dense.shape[::-1] if transposed else dense.shape),
        0.0,
    )
    from_weight, nonzero = _bits.BitMatrix.nonzero(weight, transposed=transposed)
    assert nonzero == int(dense.sum())
    assert np.array_equal(from_weight.bits, packed.bits) and from_weight.shape == packed.shape
    alive_in, alive_out = rng.random(rows) < alive, rng.random(cols) < alive
    assert np.array_equal(packed.push(alive_in), dense[alive_in].any(axis=0))
    assert np.array_equal(packed.pull(alive_out), dense[:, alive_out].any(axis=1))
    live = dense & alive_in[:, None] & alive_out[None, :]
    active, used_in, used_out = packed.activity(alive_in, alive_out)
    assert active == int(live.sum())
    assert np.array_equal(used_in, live.any(axis=1))
    assert np.array_equal(used_out, live.any(axis=0))


def test_channel_classes_by_hand() -> None:
    # channels 0 and 2 share a map, 1 and 3 are all False: two classes for four channels
    m = np.zeros((1, 4, 2, 2), bool)
    m[0, 0, 0, 0] = m[0, 2, 0, 0] = True
    distinct, classes = _classes.channel_classes(m, 1)
    assert distinct.shape == (1, 2, 2, 2)
    assert np.array_equal(distinct[:, classes], m)
    assert classes[0] == classes[2] != classes[1] == classes[3]
    assert _classes.channel_classes(np.eye(4, dtype=bool)[None], 1) is None  # all distinct
    merged = _classes.merge(np.array([[1, 0, 0, 1], [0, 0, 1, 0]], bool), classes, 2, axis=1)
    assert merged[:, classes[0]].tolist() == [True, True]  # columns 0 | 2
    assert merged[:, classes[1]].tolist() == [True, False]  # columns 1 | 3


CONV = Contract(
    "conv",
    0,
    1,
    WeightSource("w", "initializer"),
    strides=(1, 1),
    pads=(1, 1, 1, 1),
    dilations=(1, 1),
    group=1,
)


@settings(max_examples=examples(40), deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_merged_channels_give_the_same_convolution(seed) -> None:
    rng = np.random.default_rng(seed)
    kinds = rng.random((1, 3, 5, 5)) < 0.6  # at most three distinct maps over six channels
    x = kinds[:, rng.integers(0, 3, 6)]
    w = rng.random((4, 6, 3, 3)) < 0.3
    merged = _classes.channel_classes(x, 1)
    assert merged is not None
    xs, classes = merged
    ws = _classes.merge(w, classes, xs.shape[1], axis=1)
    full = contract_forward(CONV, w.astype(np.float32), x, (1, 4, 5, 5), binary=True)
    assert np.array_equal(
        contract_forward(CONV, ws.astype(np.float32), xs, (1, 4, 5, 5), binary=True), full
    )
    b = np.repeat(rng.random((1, 2, 5, 5)) < 0.5, 2, axis=1)  # four channels, two maps
    bs, out_classes = _classes.channel_classes(b, 1)
    wb = _classes.merge(w, out_classes, bs.shape[1], axis=0)
    assert np.array_equal(
        contract_backward(CONV, wb.astype(np.float32), bs, x.shape, binary=True),
        contract_backward(CONV, w.astype(np.float32), b, x.shape, binary=True),
    )
