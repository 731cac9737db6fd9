"""Boolean matrices packed eight entries per byte, for the input-to-output patterns of matmuls.

A matmul's pattern is as large as its weight; held as ``bool`` for every layer at once it costs a
quarter of a float32 model, packed an eighth of that (1/32). Reachability only pushes boolean
vectors through it and counts entries, which work on the packed bytes directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_ROWS = 4096  # rows per block when counting, so temporaries stay small


@dataclass(frozen=True, slots=True)
class BitMatrix:
    """An in x out boolean matrix, ``np.packbits`` along the output axis.

    Attributes:
        bits: ``uint8 [rows, ceil(cols / 8)]``; bits past ``cols`` are zero.
        shape: ``(rows, cols)`` of the boolean matrix.
    """

    bits: np.ndarray
    shape: tuple[int, int]

    @staticmethod
    def pack(dense: np.ndarray) -> BitMatrix:
        """Pack a 2-D boolean array."""
        rows, cols = dense.shape
        return BitMatrix(np.packbits(dense, axis=1), (int(rows), int(cols)))

    def push(self, rows: np.ndarray) -> np.ndarray:
        """Output units reached from the input units ``rows`` (a boolean vector)."""
        merged = np.bitwise_or.reduce(self.bits[rows], axis=0)
        return self._unpack(merged)

    def pull(self, cols: np.ndarray) -> np.ndarray:
        """Input units that reach any of the output units ``cols`` (a boolean vector)."""
        return (self.bits & np.packbits(cols)).any(axis=1)

    def activity(
        self, alive_in: np.ndarray, alive_out: np.ndarray
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """Entries between alive units: their count, and which input/output units carry one."""
        want = np.packbits(alive_out)
        rows = np.flatnonzero(alive_in)
        used_in = np.zeros(self.shape[0], bool)
        merged = np.zeros(self.bits.shape[1], np.uint8)
        active = 0
        for start in range(0, rows.size, _ROWS):
            block = rows[start : start + _ROWS]
            live = self.bits[block] & want
            active += int(_POPCOUNT[live].sum(dtype=np.int64))
            used_in[block] = live.any(axis=1)
            merged |= np.bitwise_or.reduce(live, axis=0)
        return active, used_in, self._unpack(merged)

    def _unpack(self, packed: np.ndarray) -> np.ndarray:
        return np.unpackbits(packed, count=self.shape[1]).astype(bool)
