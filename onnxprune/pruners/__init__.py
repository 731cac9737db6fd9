"""Pruners: scores, layerwise allocations, targets in direct or effective sparsity, masks.

The registries (``registry.py``) import the score, allocation and criterion modules when first
read; importing this package imports none of them.
"""
