"""Boolean matrices packed eight entries per byte, for the input-to-output patterns of matmuls.

A matmul's pattern is as large as its weight; held as ``bool`` for every layer at once it costs a
quarter of a float32 model, packed an eighth of that (1/32). Reachability only pushes boolean
vectors through it and counts entries, which work on the packed bytes directly.

The pattern is packed in the layout the weight is stored in (rows are inputs, or outputs for a
transposed weight such as Gemm's ``transB``): packing along a contiguous axis is a single fast
``np.packbits``, packing a transposed view is many times slower.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_BITWISE_COUNT = getattr(np, "bitwise_count", None)  # NumPy >= 2.0
_ROWS = 4096  # rows per block when counting, so temporaries stay small
_BLOCK = 1 << 22  # entries per block when packing a weight (4 MiB of bool)


@dataclass(frozen=True, slots=True)
class BitMatrix:
    """An in x out boolean matrix, packed along the last axis of its stored layout.

    Attributes:
        bits: ``uint8 [rows, ceil(cols / 8)]``; bits past ``cols`` are zero. Rows are the input
            units, or the output units when ``transposed``.
        shape: ``(inputs, outputs)`` of the boolean matrix.
        transposed: whether ``bits`` holds the out x in matrix.
    """

    bits: np.ndarray
    shape: tuple[int, int]
    transposed: bool = False

    @staticmethod
    def nonzero(weight: np.ndarray, *, transposed: bool = False) -> tuple[BitMatrix, int]:
        """The packed nonzero pattern of a 2-D ``weight``, and its nonzero count.

        ``weight`` is in x out, or out x in when ``transposed``.

        Block by block, so no boolean copy of the whole weight is ever held.
        """
        rows, cols = (int(n) for n in weight.shape)
        bits = np.empty((rows, -(-cols // 8)), np.uint8)
        count, step = 0, max(1, _BLOCK // max(cols, 1))
        for start in range(0, rows, step):
            block = weight[start : start + step] != 0
            count += int(np.count_nonzero(block))
            bits[start : start + step] = np.packbits(block, axis=1)
        shape = (cols, rows) if transposed else (rows, cols)
        return BitMatrix(bits, shape, transposed), count

    def push(self, rows: np.ndarray) -> np.ndarray:
        """Output units reached from the input units ``rows`` (a boolean vector)."""
        return self._hits(rows) if self.transposed else self._merged(rows)

    def pull(self, cols: np.ndarray) -> np.ndarray:
        """Input units that reach any of the output units ``cols`` (a boolean vector)."""
        return self._merged(cols) if self.transposed else self._hits(cols)

    def activity(
        self, alive_in: np.ndarray, alive_out: np.ndarray
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """Entries between alive units: their count, and which input/output units carry one."""
        if self.transposed:
            active, used_out, used_in = self._live(alive_out, alive_in)
            return active, used_in, used_out
        return self._live(alive_in, alive_out)

    def _merged(self, rows: np.ndarray) -> np.ndarray:
        """Columns with a set bit in any of ``rows``."""
        chosen = self.bits if rows.all() else self.bits[rows]
        return self._unpack(np.bitwise_or.reduce(chosen, axis=0))

    def _hits(self, cols: np.ndarray) -> np.ndarray:
        """Rows with a set bit in any of ``cols``."""
        if cols.all():
            return self.bits.any(axis=1)  # bits past the columns are zero
        want = np.packbits(cols)
        hits = np.zeros(self.bits.shape[0], bool)
        for start in range(0, hits.size, _ROWS):
            hits[start : start + _ROWS] = (self.bits[start : start + _ROWS] & want).any(axis=1)
        return hits

    def _live(self, alive_rows: np.ndarray, alive_cols: np.ndarray):
        """Set bits in alive rows and columns: count, rows and columns that carry one.

        Rows are read in place (slices) when all are alive, and not masked when all columns
        are: the common case of a model without dead units copies nothing.
        """
        want = None if alive_cols.all() else np.packbits(alive_cols)
        rows = np.flatnonzero(alive_rows)
        every_row = rows.size == self.bits.shape[0]
        used_rows = np.zeros(self.bits.shape[0], bool)
        merged = np.zeros(self.bits.shape[1], np.uint8)
        active = 0
        for start in range(0, rows.size, _ROWS):
            block = slice(start, start + _ROWS) if every_row else rows[start : start + _ROWS]
            live = self.bits[block] if want is None else self.bits[block] & want
            active += _popcount(live)
            used_rows[block] = live.any(axis=1)
            merged |= np.bitwise_or.reduce(live, axis=0)
        return active, used_rows, self._unpack(merged)

    def _unpack(self, packed: np.ndarray) -> np.ndarray:
        return np.unpackbits(packed, count=self._cols).astype(bool)

    @property
    def _cols(self) -> int:
        return self.shape[0] if self.transposed else self.shape[1]


def _popcount(packed: np.ndarray) -> int:
    """Number of set bits in a ``uint8`` array (NumPy 2's ``bitwise_count`` where it exists)."""
    if _BITWISE_COUNT is not None:
        return int(_BITWISE_COUNT(packed).sum(dtype=np.int64))
    return int(_POPCOUNT[packed].sum(dtype=np.int64))
