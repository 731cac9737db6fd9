"""Print the library's dependencies (pyproject.toml) with ONNX Runtime replaced, for the image.

    python3 container/requirements.py pyproject.toml onnxruntime==1.31.1

pyproject.toml asks for onnxruntime-gpu on Linux x86_64 (and onnxruntime elsewhere), by
environment markers; the image installs one ONNX Runtime build, the one its base can run.
"""

import sys

import tomllib


def main(pyproject: str, runtime: str) -> None:
    """Print one requirement a line: every dependency but ONNX Runtime's, then ``runtime``."""
    with open(pyproject, "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    kept = [r for r in dependencies if not r.startswith("onnxruntime")]
    sys.stdout.write("".join(f"{r}\n" for r in [*kept, runtime]))


if __name__ == "__main__":
    main(*sys.argv[1:])
