"""Command line: ``onnxprune analyze``, ``prune``, ``compact``, ``validate`` and the rest.

Parses arguments, calls the library and maps errors to exit codes; it holds no logic of its own.
Exit codes: 0 ok, 1 a bug (or a remote server's failure), 2 bad input (or a call the server
refused), 3 the validation gate failed (the gate is a value, not an error), 4 some runs of a
sweep or batch failed, 5 no server could be reached (``remote``: down, wrong address, TLS
mismatch). An ``OnnxpruneError`` exits with its class's ``exit_code`` (the tree is drawn in
``onnxprune.errors``), with or without ``--debug``, which only adds the traceback.
"""

from onnxprune.cli._common import EXIT_BUG, EXIT_GATE_FAILED, EXIT_SOME_FAILED, parse_input_shapes
from onnxprune.cli._main import main

__all__ = ["EXIT_BUG", "EXIT_GATE_FAILED", "EXIT_SOME_FAILED", "main", "parse_input_shapes"]
