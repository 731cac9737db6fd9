"""Batch pruning: many models, each in its own worker, resumable, locally or on Ray.

- ``items.py``: the models of a directory or a manifest, with their options and data;
- ``options.py``: the fingerprint of a run's options;
- ``job.py``: the job one worker runs for one model (``run_job``), its result, and the check
  that a model is already done;
- ``executors.py``: local worker processes or Ray tasks running ``run_job``;
- ``lock.py``: one batch at a time per output folder;
- ``run.py``: ``run_batch``, which ties them together and writes ``batch.jsonl`` (always in
  agreement with the files on disk).

Example:
    >>> from onnxprune.batch import PruneOptions, run_batch
    >>> batch = run_batch("zoo/", "out/", options=PruneOptions(sparsity=0.9))  # doctest: +SKIP
    >>> [r.model for r in batch.failed]  # doctest: +SKIP
    []
"""

from onnxprune.lazy import attach as _attach

__getattr__, __dir__, __all__ = _attach(  # loaded on first use: `onnxprune batch --help` stays fast
    __name__,
    {
        "onnxprune.batch.items": ["BatchItem", "collect_items"],
        "onnxprune.batch.job": ["ItemResult", "Job", "run_job"],
        "onnxprune.batch.lock": ["lock_folder"],
        "onnxprune.batch.run": ["BatchResult", "format_batch", "run_batch"],
        "onnxprune.options": ["PruneOptions", "merge_options"],
    },
)
