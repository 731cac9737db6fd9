"""Scores, one module each; importing this package registers all of them."""

from onnxprune.pruners.scores import activation, magnitude, sparsegpt, synflow  # noqa: F401
