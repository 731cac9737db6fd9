"""The Ray executor on a local Ray instance gives what the local executor gives.

One module, one Ray start (slow): skipped only when the ``ray`` extra is not installed.
"""

from __future__ import annotations

import onnx
import pytest

from onnxprune.batch import PruneOptions, run_batch
from tests.batch.models import eval_data, zoo

pytestmark = pytest.mark.slow  # starts a Ray instance

ray = pytest.importorskip("ray")

_SAME = ("model", "status", "output", "streamed", "target", "direct_sparsity")
_SAME += ("effective_sparsity", "accuracy", "baseline_accuracy", "agreement", "error")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def test_ray_gives_the_same_results_as_local_workers(local_ray, tmp_path):
    models = zoo(tmp_path / "zoo")
    eval_data(onnx.load(models["a.onnx"]), tmp_path / "evals" / "a.npz")
    kwargs = {
        "options": PruneOptions(sparsity=0.6, allocation="erk"),
        "data_dir": tmp_path / "evals",
    }
    local = run_batch(tmp_path / "zoo", tmp_path / "local", jobs=2, **kwargs)
    done = []
    remote = run_batch(
        tmp_path / "zoo", tmp_path / "ray", executor="ray", on_done=done.append, **kwargs
    )
    assert ray.is_initialized()  # ours, not shut down by the batch
    assert len(done) == 4
    assert [r.status for r in remote.results] == ["ok", "failed", "ok", "failed"]
    assert remote.results[0].accuracy is not None
    for mine, theirs in zip(local.results, remote.results, strict=True):
        assert {k: getattr(mine, k) for k in _SAME} == {k: getattr(theirs, k) for k in _SAME}
    for name in ("a.onnx", "sub/b.onnx"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    # Resuming works the same on Ray: nothing to do the second time.
    again = run_batch(tmp_path / "zoo", tmp_path / "ray", executor="ray", **kwargs)
    assert [r.status for r in again.results] == ["skipped", "failed", "skipped", "failed"]
