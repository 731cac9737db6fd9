"""What identifies a batch item's run.

A batch item's options are ``onnxprune.options.PruneOptions``, merged from the least to the most
specific: the defaults of ``prune``, the command line's flags, a manifest's ``defaults``, then the
model's own ``options`` (``merge_options``). Their fingerprint (a hash of the merged options, the
evaluation data, the sensitivity file, the user metric, the class axis and the onnxprune version)
is stored next
to the outputs, so a rerun redoes a model whose options changed.
"""

from __future__ import annotations

import hashlib
import json
import os

from onnxprune.options import PruneOptions


def fingerprint(
    options: PruneOptions,
    data: str | os.PathLike | None,
    version: str,
    sensitivity: str | os.PathLike | None = None,
    metric: str | None = None,
    class_axis: int | None = None,
) -> str:
    """A hash of what determines a model's outputs: options, evaluation data, onnxprune version.

    With ``sensitivity`` (the curves the sensitivity allocation reads), its path too; with a
    user metric, its spec too; with a class axis (accuracy per position), the axis too.
    """
    document = {
        "options": options.to_dict(),
        "data": None if data is None else os.path.abspath(data),
        "onnxprune": version,
    }
    if sensitivity is not None:  # absent otherwise: the runs done before it keep their hash
        document["sensitivity"] = os.path.abspath(sensitivity)
    if metric is not None:
        document["metric"] = metric
    if class_axis is not None:
        document["class_axis"] = class_axis
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
