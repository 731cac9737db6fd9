"""Hidden units of an LSTM, GRU or RNN through time: which carry signal, which reach an output.

A unit is one hidden unit of one direction (``D * H`` of them). Its gates read the input's
features through its rows of ``W`` and the previous hidden units through its rows of ``R``, so
signal reaches unit ``j`` from input feature ``i`` when some gate row of ``j`` in ``W`` has a
nonzero at ``i``, and from unit ``k`` when some gate row of ``j`` in ``R`` has one at ``k``; over
time these relations close transitively (a unit reached at one step feeds the next).

A gate row only passes anything if the unit can be nonzero at all. From a zero state, with the
default activations, a unit whose *candidate* pre-activation is zero at every step outputs zero
at every step, whatever its other gates do (``sigmoid(0) = 0.5``, so only the candidate can
hold a unit at zero):

- LSTM: ``c = f * c' + i * g`` stays 0 while ``g = tanh(0) = 0``, and ``h = o * tanh(c) = 0``;
- GRU: ``h = (1 - z) * n + z * h'`` stays 0 while ``n = tanh(0 + r * (0)) = 0``;
- RNN: ``h = tanh(0) = 0``.

The candidate is zero when its rows of ``W`` are zero (the input counts as possibly nonzero),
its rows of ``R`` read only units that are zero themselves, and its biases are zero; a nonzero
or run-time initial state, bias, or other activations make units nonzero
(``Recurrent.nonzero_seed``), which can only keep more weights active. Units that may be
nonzero close over ``R``'s candidate rows the same way.

A weight entry is then active iff it is nonzero, its source (an input feature, or a unit for
``R``) carries signal, and its row's unit may be nonzero and reaches an output (directly, or
through units that read it). Like biases elsewhere, a unit's constant output (a bias, no input
path) does not carry signal. Time is not tracked: a unit reached at any step counts as reached
at every step, which can only under-report effective sparsity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxprune.graph.transfers import Recurrent


@dataclass(frozen=True)
class RecurrentUnits:
    """What the weights of one recurrent node say about its units.

    Attributes:
        spec: the node.
        w: [D, G, H, I] the nonzero entries of ``W`` per gate.
        r: [D, G, H, H] the nonzero entries of ``R`` per gate.
        nonzero: [D, H] units that may be nonzero at some step.
        reads_x: [D, H, I] unit ``j`` may be nonzero and some gate row of it reads feature ``i``.
        reads_h: [D, H, H] unit ``j`` may be nonzero and some gate row of it reads unit ``k``.
    """

    spec: Recurrent
    w: np.ndarray
    r: np.ndarray
    nonzero: np.ndarray
    reads_x: np.ndarray
    reads_h: np.ndarray

    @classmethod
    def of(cls, spec: Recurrent, w: np.ndarray, r: np.ndarray) -> RecurrentUnits:
        """The units of ``spec`` with weights ``W`` and ``R`` in the consumed layout."""
        d, h, g = spec.directions, spec.hidden, len(spec.gates)
        w_nz = (np.asarray(w) != 0).reshape(d, g, h, -1)
        r_nz = (np.asarray(r) != 0).reshape(d, g, h, h)
        cand_r = r_nz[:, spec.candidate]
        seed = spec.nonzero_seed | w_nz[:, spec.candidate].any(axis=-1)
        seed = seed | (cand_r & spec.nonzero_state[:, None, :]).any(axis=-1)
        nonzero = forward_closure(seed, cand_r)
        reads_x = w_nz.any(axis=1) & nonzero[..., None]
        reads_h = r_nz.any(axis=1) & nonzero[..., None]
        return cls(spec, w_nz, r_nz, nonzero, reads_x, reads_h)

    @property
    def size(self) -> int:
        """Number of units, ``D * H``."""
        return self.spec.directions * self.spec.hidden

    def forward(
        self,
        x: np.ndarray | None = None,
        h0: np.ndarray | None = None,
        c0: np.ndarray | None = None,
    ) -> np.ndarray:
        """[D, H] units carrying signal from input features ``x`` [I], initial states [D * H].

        The initial hidden state enters through ``R`` (and, for a GRU, stays in its own unit:
        ``h = ... + z * h'``); the initial cell state of an LSTM enters its own unit.
        """
        d, h = self.spec.directions, self.spec.hidden
        seed = np.zeros((d, h), bool)
        if x is not None:
            seed |= (self.reads_x & x[None, None, :]).any(axis=-1)
        own = np.zeros((d, h), bool)
        if h0 is not None:
            h0 = h0.reshape(d, h)
            seed |= (self.reads_h & h0[:, None, :]).any(axis=-1)
            if self.spec.op_type == "GRU":
                own |= h0
        if c0 is not None:
            own |= c0.reshape(d, h)
        return forward_closure(seed | (own & self.nonzero), self.reads_h)

    def backward(self, out: np.ndarray) -> np.ndarray:
        """[D, H] units whose value reaches the output units ``out`` [D * H], through time."""
        d, h = self.spec.directions, self.spec.hidden
        return backward_closure(out.reshape(d, h) & self.nonzero, self.reads_h)

    def pull_x(self, reaching: np.ndarray) -> np.ndarray:
        """[I] input features read by units that reach an output."""
        return (self.reads_x & reaching[..., None]).any(axis=(0, 1))

    def pull_h0(self, reaching: np.ndarray) -> np.ndarray:
        """[D * H] units of the initial hidden state that reach an output."""
        pulled = (self.reads_h & reaching[..., None]).any(axis=1)
        if self.spec.op_type == "GRU":
            pulled |= reaching & self.nonzero
        return pulled.reshape(-1)

    def activity(
        self, weight: str, alive: np.ndarray, reaching: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Active entries of ``W`` (``weight="w"``) or ``R``, and (nonzero, active) per gate.

        Args:
            weight: ``"w"`` or ``"r"``.
            alive: the sources carrying signal: input features [I] for ``W``, units [D, H]
                for ``R``.
            reaching: [D, H] units that reach an output.

        Returns:
            The active mask in the consumed layout ([D, G*H, I] or [D, G*H, H]), and a
            [G, 2] int64 array of nonzero and active entries per gate.
        """
        pattern = self.w if weight == "w" else self.r
        sources = alive[None, None, None, :] if weight == "w" else alive[:, None, None, :]
        rows = (reaching & self.nonzero)[:, None, :, None]
        active = pattern & sources & rows
        counts = np.stack([pattern.sum(axis=(0, 2, 3)), active.sum(axis=(0, 2, 3))], axis=1).astype(
            np.int64
        )
        d, g, h, n = pattern.shape
        return active.reshape(d, g * h, n), counts


def forward_closure(seed: np.ndarray, reads: np.ndarray) -> np.ndarray:
    """[D, H] ``seed`` and every unit that reads (``reads[d, j, k]``) a unit already in it."""
    reached = seed.copy()
    frontier = reached
    while frontier.any():
        new = (reads & frontier[:, None, :]).any(axis=-1) & ~reached
        reached |= new
        frontier = new
    return reached


def backward_closure(seed: np.ndarray, reads: np.ndarray) -> np.ndarray:
    """[D, H] ``seed`` and every unit read (``reads[d, j, k]``) by a unit already in it."""
    reached = seed.copy()
    frontier = reached
    while frontier.any():
        new = (reads & frontier[:, :, None]).any(axis=1) & ~reached
        reached |= new
        frontier = new
    return reached


def hidden_axes(spec: Recurrent, output: int) -> tuple[int, ...]:
    """The axes holding the units (direction, hidden) of output ``output`` (0: Y, 1-2: states).

    ``Y`` is [T, D, B, H] ([B, T, D, H] batch first), ``Y_h``/``Y_c`` and the initial states
    [D, B, H] ([B, D, H]).
    """
    if output == 0:
        return (2, 3) if spec.batch_first else (1, 3)
    return (1, 2) if spec.batch_first else (0, 2)


@dataclass(frozen=True)
class RecurrentLink:
    """The channel level's link from one input of a recurrent node to one of its outputs.

    ``source`` is ``"x"`` (input features), ``"h0"`` or ``"c0"`` (initial states, as units).
    Pushing closes the units over time; pulling gives the sources whose signal reaches.
    """

    units: RecurrentUnits
    source: str
    shape: tuple[int, int]

    def push(self, vec: np.ndarray) -> np.ndarray:
        """Output units carrying signal from the sources ``vec``."""
        return self.units.forward(**{self.source: vec}).reshape(-1)

    def pull(self, vec: np.ndarray) -> np.ndarray:
        """Sources whose signal reaches the output units ``vec``."""
        reaching = self.units.backward(vec)
        if self.source == "x":
            return self.units.pull_x(reaching)
        if self.source == "h0":
            return self.units.pull_h0(reaching)
        return (reaching & self.units.nonzero).reshape(-1)


def recurrent_links(units: RecurrentUnits, x_features: int) -> dict[str, RecurrentLink]:
    """The link of each source kind (``x``, ``h0``, ``c0``) of a node to its outputs."""
    n = units.size
    return {
        "x": RecurrentLink(units, "x", (x_features, n)),
        "h0": RecurrentLink(units, "h0", (n, n)),
        "c0": RecurrentLink(units, "c0", (n, n)),
    }
