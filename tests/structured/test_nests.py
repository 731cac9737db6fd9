"""Nested groups (``structured.nests``): settling, what compaction may remove, what a prune keeps.

Slot ids and group labels are written by hand; every answer is worked out in the comments.
"""

from __future__ import annotations

import numpy as np

from onnxprune.structured.nests import Nest, choose, respect, settle


def test_parents_sharing_children_are_tied_then_one_nest():
    # K repeat: query slots 0-3 in K slots 4, 4, 5, 5; V repeat: query slots 6-9 (tied to 0-3 by
    # the attention MatMuls: same groups) in V slots 10, 10, 11, 11. K head 4 and V head 10
    # share children, so they must be tied (and 5 with 11).
    labels = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 10, 11])
    k = (np.arange(4), np.array([4, 4, 5, 5]))
    v = (np.arange(6, 10), np.array([10, 10, 11, 11]))
    extra, nests, pairs = settle(labels, [k, v])
    assert nests == [] and len(pairs) == 2
    assert set(zip(extra[0].tolist(), extra[1].tolist(), strict=True)) == {(4, 10), (5, 11)}
    labels[[10, 11]] = [4, 5]  # the groups once tied
    extra, (nest,), _ = settle(labels, pairs)
    assert extra is None
    assert nest.parents.tolist() == [4, 5]
    assert nest.children.tolist() == [[0, 1], [2, 3]]


def test_unequal_children_fall_back_to_ties():
    # Parent 4 holds children 0, 1, parent 5 holds 2 only (3 is tied to 2): no nest; each child
    # is tied to its parent, as a merge without a repeat does.
    labels = np.array([0, 1, 2, 2, 4, 5])
    pair = (np.arange(4), np.array([4, 4, 5, 5]))
    extra, nests, pairs = settle(labels, [pair])
    assert nests == [] and pairs == []
    assert extra[0].tolist() == [0, 1, 2, 3] and extra[1].tolist() == [4, 4, 5, 5]


NEST = Nest(np.array([8, 9]), np.array([[0, 1, 2, 3], [4, 5, 6, 7]]))
"""2 parents (groups 8, 9) of 4 children each."""


def test_respect_keeps_equal_children_per_parent_left():
    chosen = np.zeros(10, bool)
    chosen[[1, 4, 5, 8, 9]] = True  # parent 8 keeps 3 children, parent 9 keeps 2
    kept = ~respect([NEST], chosen, np.zeros(10, bool))
    # neither parent loses all its children, so both stay; each keeps 3 (the most any keeps):
    # parent 9 keeps back the child chosen last, 5
    assert np.flatnonzero(~kept).tolist() == [1, 4]
    chosen[[4, 5, 6, 7]] = True  # all of parent 9's children: it goes with them
    assert np.flatnonzero(respect([NEST], chosen, np.zeros(10, bool))).tolist() == [
        1, 4, 5, 6, 7, 9,
    ]  # fmt: skip


SCORES = np.array([1.0, 0.2, 3.0, 0.5, 2.0, 0.1, 1.5, 0.4, 2.0, 0.5])


def test_choose_takes_the_pair_closest_to_both_targets():
    fixed = np.zeros(10, bool)
    # Asked 30% of 2 parents and 8 children: want (1.4, 5.6). (2, 3) is off by 0.6/2 + 0.4/8
    # = 0.35, (1, 4) by 0.2 + 1.6/8 = 0.4: each parent keeps 3, its lowest child goes (1 and 5).
    assert sorted(choose(NEST, SCORES, fixed, (1.4, 5.6)).tolist()) == [1, 5]
    # 50%: want (1, 4); (1, 4) is exact. Parent 8 scores 2.0 / 1.25 + (0.2 + 1 + 3 + 0.5) /
    # mean(children) = 1.6 + 4.7 / 1.0875; parent 9 0.4 + 4.0 / 1.0875: parent 9 goes.
    assert sorted(choose(NEST, SCORES, fixed, (1.0, 4.0)).tolist()) == [4, 5, 6, 7, 9]
    # round_to=4: parent counts a multiple of 4 or all (2), child counts 4 or 8: (2, 2), off
    # by 0.3 + 1.6/8 = 0.5, beats (2, 4), off by 0.3 + 2.4/8: each parent keeps its best 2.
    assert sorted(choose(NEST, SCORES, fixed, (1.4, 5.6), round_to=4).tolist()) == [1, 3, 5, 7]


def test_choose_passes_over_pairs_that_remove_a_fixed_group():
    fixed = np.zeros(10, bool)
    fixed[5] = True  # at 50%, (1, 4): the parent kept is the one holding the fixed child, 9
    assert sorted(choose(NEST, SCORES, fixed, (1.0, 4.0)).tolist()) == [0, 1, 2, 3, 8]
    fixed[1] = True  # a fixed child under each parent: every pair keeping one parent is passed
    # over ((1, 4), (1, 3), (1, 2), (1, 1), off by 0 to 0.375); (2, 2), off by 0.5, keeps the
    # fixed child and the best other of each: 1 and 2, 5 and 4
    assert sorted(choose(NEST, SCORES, fixed, (1.0, 4.0)).tolist()) == [0, 3, 6, 7]
    fixed[:] = True  # nothing may go
    assert choose(NEST, SCORES, fixed, (1.0, 4.0)).tolist() == []
