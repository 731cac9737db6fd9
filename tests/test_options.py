"""``PruneOptions`` and ``check_prune``: one options model, checked in one place."""

from __future__ import annotations

import dataclasses

import pytest

from onnxprune import InvalidOptionError, PruneOptions
from onnxprune.cli._common import flag
from onnxprune.options import check_prune, merge_options


@pytest.mark.parametrize(
    ("options", "inputs", "outputs", "message"),
    [
        (PruneOptions(), (), (), "nothing to do: give --sparsity, --nm or --masks-in"),
        (PruneOptions(sparsity=0.5, nm="2:4"), (), (), "give either --sparsity or --nm"),
        (PruneOptions(round_to=8), (), (), "--round-to needs --structured"),
        (PruneOptions(sparsity=0.5, scope="global"), (), (), "--scope needs --structured"),
        (PruneOptions(sparsity=0.5), (), ("masked_out",), "--masked-out needs --structured"),
        (PruneOptions(structured="l1"), (), (), "--structured needs --sparsity"),
        (
            PruneOptions(structured="l1", sparsity=0.5, score="lamp"),
            ("calibration",),
            (),
            "--structured takes no --score, --calibration (they choose single weights)",
        ),
        (
            PruneOptions(structured="l1", sparsity=0.5),
            ("masks",),
            (),
            "--structured takes no --masks-in",
        ),
        (
            PruneOptions(structured="l1", sparsity=0.5, level="exact", compact=True),
            (),
            ("masks_out",),
            "--structured takes no --exact, --compact, --masks-out",
        ),
        (
            PruneOptions(structured="l1", sparsity=0.5, prune_shared=True),
            (),
            (),
            "--structured takes no --prune-shared",
        ),
        (PruneOptions(sparsity=0.5, dims=(("batch", 0),)), (), (), "dims must map dimension"),
        (PruneOptions(structured="l9", sparsity=0.5), (), (), "structured 'l9' must be one of"),
        (PruneOptions(sparsity=1.0), (), (), "sparsity=1.0 must be in [0, 1)"),
        (PruneOptions(sparsity=float("nan")), (), (), "sparsity=nan must be in [0, 1)"),
        (PruneOptions(sparsity=0.5, min_threshold=-0.1), (), (), "min_threshold=-0.1"),
        (PruneOptions(sparsity=0.5, score="nope"), (), (), "nope"),
        (PruneOptions(sparsity=0.5, allocation="nope"), (), (), "nope"),
        (PruneOptions(nm="4:2"), (), (), "4:2"),
        (PruneOptions(sparsity=0.5, level="pixel"), (), (), "level 'pixel' must be one of"),
        (PruneOptions(sparsity=0.5, stream="maybe"), (), (), "stream 'maybe' must be one of"),
        (PruneOptions(sparsity=0.5, rounds=0), (), (), "rounds=0 must be at least 1"),
        (
            PruneOptions(sparsity=0.5, rounds=2**31 - 1),
            (),
            (),
            "rounds=2147483647 must be at most 10000",
        ),
        (PruneOptions(sparsity=0.5, seed=-1), (), (), "seed=-1 must be at least 0"),
        (PruneOptions(sparsity=0.5, seed=2**63), (), (), "seed=9223372036854775808 must be at"),
        (
            PruneOptions(structured="l1", sparsity=0.5, round_to=2**31 - 1),
            (),
            (),
            "round_to=2147483647 must be at most 65536",
        ),
        (
            PruneOptions(structured="l1", sparsity=0.5, round_to=0),
            (),
            (),
            "round_to=0 must be at least 1",
        ),
    ],
)
def test_check_prune_names_the_option_in_the_callers_words(options, inputs, outputs, message):
    with pytest.raises(InvalidOptionError) as error:
        check_prune(options, inputs=inputs, outputs=outputs, spell=flag)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("options", "inputs"),
    [
        (PruneOptions(sparsity=0.5), ()),
        (PruneOptions(nm="2:4"), ("scores",)),
        (PruneOptions(), ("masks",)),  # apply given masks only
        (PruneOptions(sparsity=0.9, effective=True, score="lamp", allocation="uniform+"), ()),
        (PruneOptions(sparsity=0.3, structured="l2", scope="global", round_to=8, seed=3), ()),
        (PruneOptions(sparsity=0.5, compact=True, stream="never", level="exact"), ()),
        (PruneOptions(sparsity=0.5, score="synflow", rounds=10_000, seed=2**63 - 1), ()),
        (PruneOptions(sparsity=0.5, structured="l1", round_to=65_536), ()),
        (  # structured pruning finds its groups with the shapes given
            PruneOptions(
                sparsity=0.5, structured="l1", input_shapes=(("x", (1, 2)),), dims=(("n", 1),)
            ),
            (),
        ),
        (PruneOptions(sparsity=0.5, prune_shared=True, dims=(("batch", 4),)), ()),
    ],
)
def test_check_prune_takes_what_a_path_can_do(options, inputs):
    check_prune(options, inputs=inputs)


def test_the_default_spelling_is_the_option_name():
    with pytest.raises(InvalidOptionError, match=r"^round_to needs structured$"):
        check_prune(PruneOptions(round_to=4))


def test_merge_options_reads_loose_data_with_its_place_in_the_message():
    merged = merge_options(
        PruneOptions(sparsity=0.1),
        {"sparsity": 0, "round-to": 4, "structured": "l1", "input_shapes": ["x=1,3"]},
        "m.yaml defaults",
    )
    assert merged == PruneOptions(
        sparsity=0.0, round_to=4, structured="l1", input_shapes=(("x", (1, 3)),)
    )
    assert isinstance(merged.sparsity, float)
    bad = [
        ({"sparsity": "half"}, "m.yaml: option sparsity must be a number, got 'half'"),
        ({"effective": 1}, "m.yaml: option effective must be a bool"),
        ({"colour": "red"}, "m.yaml: unknown option 'colour'; known: allocation"),
        ({"score": "nope"}, "m.yaml: "),
        ({"input_shapes": {"x": [0]}}, "m.yaml: input_shapes must map input names"),
    ]
    for given, message in bad:
        with pytest.raises(InvalidOptionError) as error:
            merge_options(PruneOptions(), given, "m.yaml")
        assert str(error.value).startswith(message), str(error.value)
    with pytest.raises(InvalidOptionError, match=r"^sparsity=2\.0 must be in"):
        merge_options(PruneOptions(), {"sparsity": 2.0})  # no place: the bare message


def test_options_are_a_frozen_value_with_a_json_form():
    options = PruneOptions(sparsity=0.5, input_shapes=(("x", (1, 3)),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.sparsity = 0.9  # type: ignore[misc]
    data = options.to_dict()
    assert data["input_shapes"] == {"x": [1, 3]}
    assert set(data) == {f.name for f in dataclasses.fields(PruneOptions)}
    assert merge_options(PruneOptions(), data, "round trip") == options
