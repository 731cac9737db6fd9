"""``python -m onnxprune.service [--host H] [--port N] ...``: the same as ``onnxprune serve``."""

import sys

from onnxprune.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
