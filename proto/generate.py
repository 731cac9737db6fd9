"""Generate the Python gRPC code of ``proto/onnxprune/v1/*.proto`` into a package folder.

Runs ``python -m grpc_tools.protoc -I proto --python_out --pyi_out --grpc_python_out`` into a
temporary folder, then moves the modules of ``onnxprune/v1/`` into the target folder and rewrites
their imports (``from onnxprune.v1 import x_pb2`` -> ``from onnxprune.service._proto import
x_pb2``) and the module name the messages are built in (pickling finds them there), so the
descriptors keep their public names (``onnxprune/v1/pruning.proto``) while the code lives in the
private package ``onnxprune.service._proto``. ``make proto`` runs it; ``tests/server/test_proto.py``
runs it into a temporary folder and compares with the committed files.

    python proto/generate.py [OUT_DIR]     # default: onnxprune/service/_proto
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PACKAGE = "onnxprune.service._proto"
_IMPORT = re.compile(r"^from onnxprune\.v1 import (\w+_pb2)", re.MULTILINE)
_MODULE = re.compile(r"'onnxprune\.v1\.(\w+_pb2)'")  # the module name messages pickle under


def generate(out_dir: Path) -> list[Path]:
    """Write the generated modules into ``out_dir``; returns the paths written."""
    sources = sorted(PROTO_ROOT.glob("onnxprune/v1/*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(p.relative_to(PROTO_ROOT)) for p in sources),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for generated in sorted((Path(tmp) / "onnxprune" / "v1").iterdir()):
            text = _IMPORT.sub(rf"from {PACKAGE} import \1", generated.read_text())
            text = _MODULE.sub(rf"'{PACKAGE}.\1'", text)
            target = out_dir / generated.name
            target.write_text(text)
            written.append(target)
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "onnxprune" / "service" / "_proto"
    for path in generate(out):
        print(f"wrote {path}")  # noqa: T201
