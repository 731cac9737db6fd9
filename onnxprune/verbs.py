"""The library entries every shell calls: ``prune`` and ``compact`` choose their own path.

``prune`` turns ``PruneOptions`` (or the same fields as keywords) into one of three paths:

- **structured**: whole units chosen by a criterion over dependency groups, then compaction
  (``onnxprune.structured``);
- **streaming**: a model with external data, written to ``output``, pruned tensor by tensor
  without holding its weights (``pruners.streaming``), when the options allow it (magnitude
  score, a direct target, nothing but options given) and ``stream`` is not ``never``;
- **in memory**: every other prune (``pruners.prune``), compacted after with ``compact=True``.

The CLI, the gRPC worker, batch and sweep call these and nothing below them, so a path added
here reaches every shell. Outputs are checked before any work (never a file the call reads:
the model, its external data, masks, scores, calibration; never one another) and written
atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxprune.errors import InvalidOptionError
from onnxprune.model import (
    DEFAULT_MAX_BYTES,
    ModelSource,
    load_model,
    save_model,
    write_text_atomic,
)
from onnxprune.options import PruneOptions, check_prune, dims_of, input_shapes_of
from onnxprune.outputs import check_outputs, save_with_masks
from onnxprune.pruners.prune import PruneResult

if TYPE_CHECKING:
    from onnxprune.structured.compact import CompactResult

PathLike = str | os.PathLike
Arrays = PathLike | Mapping[str, np.ndarray]


def prune(
    model: ModelSource,
    options: PruneOptions | None = None,
    /,
    *,
    masks: Arrays | None = None,
    scores: Arrays | None = None,
    calibration: Arrays | None = None,
    sensitivity: PathLike | Mapping | None = None,
    output: PathLike | None = None,
    masks_out: PathLike | None = None,
    report_out: PathLike | None = None,
    masked_out: PathLike | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    **fields: object,
) -> PruneResult:
    """Prune ``model`` as ``options`` say, in memory or into files.

    Args:
        model: a path, serialized bytes or an ``onnx.ModelProto``.
        options: what to do (``PruneOptions``).
        masks: masks to apply and compose with (``.npz`` path or mapping by weight name).
        scores: external importance scores (``.npz`` path or mapping by weight name).
        calibration: arrays by graph input name (``.npz`` path or mapping), for the calibrated
            scores (``activation``, ``sparsegpt``) and for ``reconstruct``.
        sensitivity: the curves of ``onnxprune sensitivity`` (its JSON's path or the parsed
            document), for ``allocation="sensitivity"``.
        output: where to write the pruned model; needed to stream a model with external data.
        masks_out: where to write the masks (unstructured).
        report_out: where to write the result's JSON (``PruneResult.to_dict``).
        masked_out: with ``structured``: the same pruning as zeros in the original shapes.
        max_bytes: largest model accepted (file plus external data).
        **fields: ``PruneOptions`` fields as keywords (``sparsity=0.9, score="lamp"``,
            ``input_shapes`` as a mapping); they override ``options``.

    Returns:
        A ``PruneResult``: the pruned model (``None`` when streamed: it is on disk), masks,
        report and warnings; ``structured`` holds the units kept and the compaction.

    Raises:
        InvalidOptionError: options that cannot be honoured, outputs that would overwrite an
            input or one another, bad scores or masks.
        InvalidModelError: the model cannot be read safely.

    Example:
        >>> import onnxprune
        >>> from onnx import helper, numpy_helper, TensorProto
        >>> w = numpy_helper.from_array(np.arange(1, 7, dtype=np.float32).reshape(2, 3), "w")
        >>> g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
        >>> m = helper.make_model(g, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
        >>> onnxprune.prune(m, sparsity=0.5).masks["w"].astype(int).tolist()
        [[0, 0, 0], [1, 1, 1]]
    """
    options = _options(options, fields)
    given = {
        "masks": masks,
        "scores": scores,
        "calibration": calibration,
        "sensitivity": sensitivity,
    }
    written = {"masks_out": masks_out, "masked_out": masked_out}
    check_prune(
        options,
        inputs=[name for name, value in given.items() if value is not None],
        outputs=[name for name, value in written.items() if value is not None],
    )
    if output is None and any(p is not None for p in (masks_out, report_out, masked_out)):
        raise InvalidOptionError("masks_out, report_out and masked_out need output")
    if output is not None:
        check_outputs(
            _path(model),
            output,
            masks_out,
            report_out,
            masked_out,
            reads=given,
            max_bytes=max_bytes,
        )
    if options.structured is not None:
        result = _structured(model, options, given["calibration"], max_bytes)
    elif (source := _unless_streamed(model, options, given, output, max_bytes)) is None:
        result = _streamed(model, options, output, masks_out, max_bytes)
    else:
        result = _in_memory(source, options, given, max_bytes)
    if output is not None:
        _write(result, Path(output), masks_out, masked_out)
    if report_out is not None:
        write_text_atomic(Path(report_out), json.dumps(result.to_dict(), indent=2))
    return result


def compact(
    model: ModelSource,
    *,
    output: PathLike | None = None,
    report_out: PathLike | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
) -> CompactResult:
    """Remove every dead unit of ``model``, keeping its outputs (``onnxprune compact``).

    Args:
        model: a path, serialized bytes or an ``onnx.ModelProto``.
        output: where to write the compacted model (atomically; never the input).
        report_out: where to write the result's JSON (``CompactResult.to_dict``).
        max_bytes: largest model accepted (file plus external data).
        input_shapes: fixed shapes for inputs with symbolic dimensions (the written model
            declares them).
        dims: sizes of symbolic dimensions by name, e.g. ``{"batch": 1, "sequence": 128}``.

    Returns:
        A ``CompactResult`` (see ``onnxprune.structured.compact``).

    Raises:
        InvalidOptionError: ``output`` would overwrite the input or cannot be written.
        InvalidModelError: the model cannot be read safely.
    """
    from onnxprune.structured.compact import compact as compact_model

    if output is None and report_out is not None:
        raise InvalidOptionError("report_out needs output")
    if output is not None:
        check_outputs(_path(model), output, report_out, max_bytes=max_bytes)
    result = compact_model(
        load_model(model, max_bytes=max_bytes), input_shapes=input_shapes, dims=dims
    )
    if output is not None:
        save_model(result.model, Path(output))
    if report_out is not None:
        write_text_atomic(Path(report_out), json.dumps(result.to_dict(), indent=2))
    return result


def _path(model: ModelSource) -> PathLike | None:
    """The model's path, or ``None`` for bytes and protos (nothing on disk to protect)."""
    return model if isinstance(model, PathLike) else None


def _options(options: PruneOptions | None, fields: Mapping[str, object]) -> PruneOptions:
    base = options or PruneOptions()
    if not fields:
        return base
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(PruneOptions)})
    if unknown:
        raise TypeError(f"prune() got unexpected keyword argument(s) {', '.join(unknown)}")
    given = dict(fields)
    if "input_shapes" in given:
        given["input_shapes"] = input_shapes_of(given["input_shapes"] or {}, "input_shapes")
    if "dims" in given:
        given["dims"] = dims_of(given["dims"] or {}, "dims")
    return dataclasses.replace(base, **given)


def _unless_streamed(
    model: ModelSource,
    options: PruneOptions,
    given: Mapping[str, object],
    output: PathLike | None,
    max_bytes: int,
) -> ModelSource | None:
    """``None`` when this prune goes tensor by tensor, else the model to prune in memory.

    With ``stream="auto"`` a path is parsed once to see whether it has external data; when it
    has none, that parse is the model (``model.finish_load``), not read again. ``stream="always"``
    refuses options that cannot stream.
    """
    from onnxprune.model import finish_load, parse_checked
    from onnxprune.pruners.registry import get_allocation
    from onnxprune.pruners.streaming import STREAMING_ALLOCATIONS, STREAMING_SCORES

    if options.stream == "never":
        return model
    blockers = [
        reason
        for reason, present in (
            ("a path and an output file", output is None or not isinstance(model, PathLike)),
            ("a sparsity target", options.sparsity is None),
            (f"score {' or '.join(STREAMING_SCORES)}", options.score not in STREAMING_SCORES),
            (
                f"allocation {', '.join(STREAMING_ALLOCATIONS)}",
                get_allocation(options.allocation).name not in STREAMING_ALLOCATIONS,
            ),
            ("no effective target", options.effective),
            ("no nm", options.nm is not None),
            ("no compact", options.compact),
            (
                "no masks, scores, calibration or sensitivity data",
                any(v is not None for v in given.values()),
            ),
        )
        if present
    ]
    if options.stream == "always":
        if blockers:
            raise InvalidOptionError(
                f"stream=always prunes tensor by tensor, which needs {'; '.join(blockers)}; "
                "use stream=never (--stream never) to load the model whole"
            )
        return None
    if blockers:
        return model
    parsed, external, base = parse_checked(Path(model), max_bytes=max_bytes)
    return None if external else finish_load(parsed, external, base, max_bytes=max_bytes)


def _streamed(
    model: PathLike,
    options: PruneOptions,
    output: PathLike,
    masks_out: PathLike | None,
    max_bytes: int,
) -> PruneResult:
    from onnxprune.pruners.streaming import prune_streaming

    done = prune_streaming(
        model,
        output,
        masks_out=masks_out,
        sparsity=options.sparsity,
        score=options.score,
        allocation=options.allocation,
        min_threshold=options.min_threshold,
        layers=options.layers,
        exclude=options.exclude,
        prune_shared=options.prune_shared,
        input_shapes=options.shapes,
        dims=options.dim_sizes,
        level=options.level,
        max_bytes=max_bytes,
    )
    return PruneResult(None, {}, done.report, done.warnings, streamed=True)


def _in_memory(
    model: ModelSource, options: PruneOptions, given: Mapping[str, object], max_bytes: int
) -> PruneResult:
    from onnxprune.pruners.prune import prune_weights

    result = prune_weights(
        model,
        options,
        masks=given["masks"],
        scores=given["scores"],
        calibration=_arrays(given["calibration"]),
        sensitivity=given["sensitivity"],
        max_bytes=max_bytes,
    )
    if not options.compact:
        return result
    compacted = compact(result.model, input_shapes=options.shapes, dims=options.dim_sizes)
    return dataclasses.replace(result, model=compacted.model, compaction=compacted)


def _arrays(data: Arrays | None) -> Mapping[str, np.ndarray] | None:
    """Calibration arrays, read from their ``.npz`` file when given a path."""
    from onnxprune.pruners.masks import load_npz

    return load_npz(data, "calibration") if isinstance(data, (str, os.PathLike)) else data


def _structured(
    model: ModelSource, options: PruneOptions, calibration: Arrays | None, max_bytes: int
) -> PruneResult:
    from onnxprune.structured.prune import structured_prune

    done = structured_prune(
        load_model(model, max_bytes=max_bytes),
        sparsity=options.sparsity,
        criterion=options.structured,
        scope=options.scope,
        round_to=options.round_to,
        seed=options.seed,
        layers=options.layers,
        exclude=options.exclude,
        calibration=_arrays(calibration),
        ridge=options.ridge,
        input_shapes=options.shapes,
        dims=options.dim_sizes,
    )
    return PruneResult(
        done.model, {}, None, done.warnings, structured=done, compaction=done.compaction
    )


def _write(
    result: PruneResult, output: Path, masks_out: PathLike | None, masked_out: PathLike | None
) -> None:
    """The pruned model with its masks, then the masked model (a streamed prune wrote its own)."""
    if result.streamed:
        return
    if masks_out is not None and result.structured is None:
        save_with_masks(result.model, output, result.masks, Path(masks_out))
    else:
        save_model(result.model, output)
    if masked_out is not None:
        save_model(result.structured.masked, Path(masked_out))
