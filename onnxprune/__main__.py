"""``python -m onnxprune``: the command line, as ``onnxprune`` runs it."""

import sys

from onnxprune.cli import main

sys.exit(main())
