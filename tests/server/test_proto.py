"""The committed generated code equals what ``make proto`` writes now (stale -> fail)."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

from onnxprune.service._proto import pruning_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "onnxprune" / "service" / "_proto"


def _generator():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_up_to_date(tmp_path):
    written = _generator().generate(tmp_path)
    assert {p.name for p in written} == {
        "pruning_pb2.py",
        "pruning_pb2.pyi",
        "pruning_pb2_grpc.py",
    }
    for fresh in written:
        committed = COMMITTED / fresh.name
        assert committed.read_text() == fresh.read_text(), f"{fresh.name} is stale: run make proto"
    generated = {p.name for p in COMMITTED.iterdir() if "_pb2" in p.name}
    assert generated == {p.name for p in written}, "remove generated files of deleted protos"


def test_descriptors_keep_the_public_contract_names():
    assert pb.DESCRIPTOR.name == "onnxprune/v1/pruning.proto"
    assert pb.DESCRIPTOR.services_by_name["PruningService"].full_name == (
        "onnxprune.v1.PruningService"
    )
    header = pb.PruneHeader(output_name="p.onnx")  # workers receive headers by pickle
    assert pickle.loads(pickle.dumps(header)) == header  # noqa: S301 - our own bytes
