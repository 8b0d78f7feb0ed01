"""The SD-SNN structural schedule: spine constraint, regeneration, pruning, rates.

:class:`StructureSchedule` composes the pure functions of ``spines``, ``pruning``,
``regeneration`` and ``rates`` and runs once per *structural step* -- after each
epoch in the reference, or every K minibatches for small data sets (the caller
decides; the schedule only counts its own steps ``t = 0, 1, 2, ...``).

One step ``t`` (:meth:`StructureSchedule.step`), per layer in order:

1. ``t == 0``: spine ranges are initialised from ``W*M`` (``r+ = max``, ``r- = -max``).
   ``t >= 1``: spine ranges are updated on ``W*M`` (mask of the previous step).
2. ``t > constrain_start`` (default ``T_s``): every weight of a constrained layer is
   clipped into its range (present and removed synapses alike, as in the reference).
3. ``t > structure_start`` (default ``2*T_s``): regeneration of every regenerating
   layer first, then, layer by layer, pruning followed by that layer's neurotrophic
   rate update (so a conv layer's update sees the *next* layer's pruned count of the
   previous step, as in the reference loop).
4. Removed synapses get weight 0 (``W[M == 0] = 0``), pruned units' biases 0
   (``zero_pruned_biases``), mask changes are logged as events, statistics recorded.

Weights, masks and biases are modified **in place**.  The schedule never holds
weights or masks itself: the caller checkpoints them next to :meth:`state_dict`.

Modes (``SDSNNConfig.mode``)
----------------------------
* ``'reference'`` (the published code): within a step every weight trains densely;
  the mask is applied here at step end; regeneration scores removed synapses by the
  weight their gradient gave them during the step.
* ``'strict'``: the trainer keeps removed synapses at 0 and does not update them;
  :meth:`step` then needs ``grad_score`` for every regenerating layer from the first
  regeneration step on (see ``regeneration``: ``-lr * sum dL/dw`` over the step, in
  weight units).  Scores are the virtual weights ``W + grad_score`` of removed
  synapses, which go through the same constraint clip as real weights.  A restored
  synapse keeps its current value, 0 (``strict_restore='current'``), or takes its
  virtual weight (``strict_restore='virtual'``).

Switchable reference quirks
---------------------------
* ``count_transitions`` (default False): the reference counts a consecutive step
  only when the condition also held at the previous step, so spine expansion and
  contraction need ``T_s + 1`` steps and restoration ``G + 2``; the default counts
  the first step (``T_s`` and ``G + 1``).
* ``conv_spine_updates`` (default True): False reproduces the CIFAR code's
  indentation slip (conv spine ranges stay at their initial values; they are still
  used for the constraint and importance).
* ``zero_pruned_biases`` (default True): False reproduces the reference, where a
  pruned neuron keeps its bias and may still fire.
* ``regrow_pruned_units`` (default True, the reference and the notes' literal
  reading): regeneration candidates include removed synapses of pruned units.
  Pruning is the only way synapses get removed, so with False regeneration only
  acts on synapses absent from the initial mask (inert when training starts dense).
  Either way a pruned unit *stays pruned*: it stays in ``pruned``, is never
  selected again, counts in ``P_l`` and keeps a zero bias; but with True it can
  regain incoming synapses (a RESTORED event each) and so transmit again -- which is
  what the reference does.  With False a pruned unit's incoming row stays 0 forever.
* Not reproduced: the reference counts a unit as pruned for the rate rule when it has
  fewer than 50 (FC) / 20 (conv) present synapses (here ``P_l`` is the size of the
  pruned set), and hard-codes the rate's ``N_out`` (here ``SDSNNConfig.n_out``).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from . import pruning as _pr
from . import rates as _rt
from . import regeneration as _rg
from . import spines as _sp
from .events import REMOVED, RESTORED, StructureLog

__all__ = [
    "SDSNNConfig",
    "LayerSpec",
    "StructureSchedule",
    "fc_layer_specs",
    "network_layer_specs",
    "removed_synapse_report",
]

_MODES = ("reference", "strict")


@dataclass(frozen=True)
class SDSNNConfig:
    """Every constant of SD-SNN; the defaults are the reference values (notes).

    Timeline: the constraint applies from step ``> constrain_start`` (None:
    ``T_s``), regeneration and pruning from step ``> structure_start`` (None:
    ``2*T_s``).  ``p(t) = min(p_max, p0 + p_growth ** (t - structure_start - 1))``
    with ``p0_fc``/``p0_conv``.  ``G_fc``/``G_conv``: persistence before
    restoration.  Rates (fractions; see ``rates`` for the percent-point increment,
    ``rate_unit``): ``rho0_fc``/``rho0_conv`` initial; FC ``a(t) = exp(-(t -
    decay_centre)/fc_decay_scale)`` for ``t <= fc_decay_end`` else ``late_rate``,
    over ``n_out``; conv ``exp(-(t - decay_centre)/conv_decay_scale)``.  ``rho_max``
    caps a rate, ``min_alive`` units per layer always survive.  ``compression``
    records the factor :meth:`compressed` applied (1 = reference timeline).
    ``freeze_after``: from this structural step on no mask changes (no regeneration,
    no pruning; the spine constraint still clips).  ``None`` is the reference, where
    pruning at the late rate never quite stops; a run that must end with a stable
    structure freezes after regeneration has faded (p(t) reaches ``p_max`` at step
    ``structure_after + 1 + log(p_max - p0)/log(p_growth)``, 76 with the defaults).
    """

    T_s: int = 18
    constrain_start: Optional[int] = None
    structure_start: Optional[int] = None
    p0_fc: float = 60.0
    p0_conv: float = 65.0
    p_growth: float = 1.1
    p_max: float = 99.0
    G_fc: int = 10
    G_conv: int = 18
    contraction: float = 0.75
    rho0_fc: float = 0.35
    rho0_conv: float = 0.05
    decay_centre: float = 37.0
    fc_decay_end: float = 60.0
    fc_decay_scale: float = 1.0
    late_rate: float = 0.00075
    conv_decay_scale: float = 5.0
    n_out: int = 10
    rate_unit: float = 0.01
    rho_max: float = 0.99
    min_alive: int = 1
    mode: str = "reference"
    strict_restore: str = "current"
    count_transitions: bool = False
    regrow_pruned_units: bool = True
    conv_spine_updates: bool = True
    zero_pruned_biases: bool = True
    compression: float = 1.0
    freeze_after: Optional[int] = None

    def __post_init__(self):
        def bad(msg):
            raise ValueError(f"SDSNNConfig: {msg}")
        ints = ("T_s", "G_fc", "G_conv", "n_out", "min_alive")
        for n in ints:
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                bad(f"{n} must be an integer, got {v!r}")
        for n in ("constrain_start", "structure_start"):
            v = getattr(self, n)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
                bad(f"{n} must be None or a non-negative integer, got {v!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                bad(f"{f.name} must be finite, got {v!r}")
        if self.T_s < 1:
            bad(f"T_s must be >= 1, got {self.T_s}")
        if self.G_fc < 0 or self.G_conv < 0:
            bad("G_fc and G_conv must be >= 0")
        if self.n_out < 1:
            bad(f"n_out must be >= 1, got {self.n_out}")
        if self.min_alive < 1:
            bad(f"min_alive must be >= 1, got {self.min_alive}")
        if self.freeze_after is not None and (not isinstance(self.freeze_after, (int, np.integer))
                                              or self.freeze_after < 0):
            bad(f"freeze_after must be None or a non-negative integer step, got {self.freeze_after!r}")
        if not 0.0 < self.rho_max < 1.0:
            bad(f"rho_max must lie in (0, 1), got {self.rho_max}")
        for n in ("rho0_fc", "rho0_conv"):
            v = getattr(self, n)
            if not 0.0 <= v <= self.rho_max:
                bad(f"{n} must lie in [0, rho_max={self.rho_max}], got {v}")
        if not 0.0 < self.contraction <= 1.0:
            bad(f"contraction must lie in (0, 1], got {self.contraction}")
        for n in ("p0_fc", "p0_conv", "p_max"):
            v = getattr(self, n)
            if not 0.0 <= v <= 100.0:
                bad(f"{n} must lie in [0, 100], got {v}")
        if self.p_growth <= 0:
            bad(f"p_growth must be positive, got {self.p_growth}")
        for n in ("fc_decay_scale", "conv_decay_scale", "compression"):
            if getattr(self, n) <= 0:
                bad(f"{n} must be positive")
        if self.late_rate < 0 or self.rate_unit < 0:
            bad("late_rate and rate_unit must be >= 0")
        if self.mode not in _MODES:
            bad(f"mode must be one of {_MODES}, got {self.mode!r}")
        if self.strict_restore not in ("current", "virtual"):
            bad(f"strict_restore must be 'current' or 'virtual', got {self.strict_restore!r}")

    # derived timeline
    @property
    def constraint_after(self) -> int:
        """The constraint applies at steps ``t > constraint_after``."""
        return self.T_s if self.constrain_start is None else int(self.constrain_start)

    @property
    def structure_after(self) -> int:
        """Regeneration and pruning run at steps ``t > structure_after``."""
        return 2 * self.T_s if self.structure_start is None else int(self.structure_start)

    def G(self, kind: str) -> int:
        return self.G_fc if kind == "fc" else self.G_conv

    def p0(self, kind: str) -> float:
        return self.p0_fc if kind == "fc" else self.p0_conv

    def rho0(self, kind: str) -> float:
        return self.rho0_fc if kind == "fc" else self.rho0_conv

    def compressed(self, factor: float) -> "SDSNNConfig":
        """The same method on a timeline ``factor`` times shorter, for short runs.

        Divided by ``factor`` (rounded, at least 1 step): ``T_s``, ``G_fc``,
        ``G_conv``, explicit ``constrain_start``/``structure_start`` (None stays
        derived from the new ``T_s``), and the offsets of ``decay_centre`` from the
        first structural step and of ``fc_decay_end`` from ``decay_centre`` (so the
        defaults become ``centre = 2*T_s' + 1``, ``end = centre + 23/factor``).
        ``p_growth`` becomes ``p_growth ** factor`` (``p(t)`` reaches ``p_max`` in
        ``1/factor`` as many steps) and ``late_rate`` is multiplied by ``factor`` (same
        late drift per unit of original time).  The decay *scales* (FC 1 step, conv 5
        steps) are kept in steps, so the early neurotrophic growth of ``rho`` keeps its
        total size; ``p0``, ``rho0``, ``contraction``, ``p_max`` are unchanged.
        ``compression`` multiplies by ``factor``.  Compressing by 1 returns an equal
        config.
        """
        f = float(factor)
        if not math.isfinite(f) or f <= 0:
            raise ValueError(f"compression factor must be positive, got {factor!r}")

        def span(x):
            return max(1, int(round(x / f)))
        T = span(self.T_s)
        cs = None if self.constrain_start is None else int(round(self.constrain_start / f))
        ss = None if self.structure_start is None else int(round(self.structure_start / f))
        fa = None if self.freeze_after is None else int(round(self.freeze_after / f))
        new = dataclasses.replace(self, T_s=T, constrain_start=cs, structure_start=ss, freeze_after=fa)
        old_first = self.structure_after + 1
        centre = new.structure_after + 1 + (self.decay_centre - old_first) / f
        end = centre + (self.fc_decay_end - self.decay_centre) / f
        return dataclasses.replace(
            new, G_fc=max(1, int(round(self.G_fc / f))) if self.G_fc else 0,
            G_conv=max(1, int(round(self.G_conv / f))) if self.G_conv else 0,
            decay_centre=float(centre), fc_decay_end=float(end),
            p_growth=float(self.p_growth ** f), late_rate=float(self.late_rate * f),
            compression=float(self.compression * f),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "SDSNNConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"SDSNNConfig: unknown fields {sorted(unknown)}")
        return cls(**dict(d))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class LayerSpec:
    """One layer as the schedule sees it.

    ``shape``: ``(N_out, N_in)`` for ``kind='fc'``, ``(C_out, C_in, kh, kw)`` for
    ``kind='conv'``.  ``prunable``: its units (rows / filters) may be pruned;
    ``regenerates``: its removed synapses (kernels) may regrow; ``constrained``: the
    spine constraint clips its weights (None: ``prunable or regenerates``, which in
    the reference means the output layer is neither tracked nor clipped).  Spine
    ranges are tracked for ``prunable or constrained`` layers.
    """

    name: str
    shape: tuple
    kind: str = "fc"
    prunable: bool = False
    regenerates: bool = False
    constrained: Optional[bool] = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.kind not in ("fc", "conv"):
            raise ValueError(f"layer {self.name!r}: kind must be 'fc' or 'conv', got {self.kind!r}")
        want = 2 if self.kind == "fc" else 4
        if len(self.shape) != want or min(self.shape) < 1:
            raise ValueError(f"layer {self.name!r}: a {self.kind} shape needs {want} positive sizes, "
                             f"got {self.shape}")

    @property
    def n_units(self) -> int:
        return self.shape[0]

    @property
    def is_constrained(self) -> bool:
        return bool(self.prunable or self.regenerates) if self.constrained is None else bool(self.constrained)

    @property
    def tracks_spines(self) -> bool:
        return bool(self.prunable or self.is_constrained)

    @property
    def is_structural(self) -> bool:
        return bool(self.prunable or self.regenerates or self.is_constrained)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "kind": self.kind, "prunable": self.prunable,
                "regenerates": self.regenerates, "constrained": self.constrained}


def fc_layer_specs(sizes: Sequence[int], names: Sequence[str] | None = None) -> list[LayerSpec]:
    """Specs of a fully connected ``sizes[0]-sizes[1]-...-sizes[-1]`` network.

    Hidden layers are prunable and regenerate; the output layer is neither (nor
    constrained), as in the reference.  E.g. ``fc_layer_specs([784, 300, 10])``.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError("need at least input and output sizes")
    n = len(sizes) - 1
    names = list(names) if names is not None else [f"fc{i}" for i in range(n)]
    return [LayerSpec(names[i], (sizes[i + 1], sizes[i]), "fc", prunable=i < n - 1, regenerates=i < n - 1)
            for i in range(n)]


def network_layer_specs(net, prune_input_conv: bool = False) -> list[LayerSpec]:
    """Specs of every trained layer of a declared :class:`~sdsnn_brian.network.Network`.

    Conv layers get ``kind='conv'`` with their kernel shape ``(C_out, C_in, kh, kw)``
    (filter pruning, kernel regeneration scored by the kernel's signed sum, the conv
    rate rule); dense layers ``kind='fc'`` with their ``(N, n_in)`` shape.  Hidden
    layers are prunable and regenerate; the output layer is neither; a conv layer fed
    directly by the input is neither unless ``prune_input_conv`` (the reference prunes
    conv2's filters and fc1's neurons in 15C3-AP2-40C3-AP2-FC300-FC10, never conv1's).
    A fully connected network gets the same specs as :func:`fc_layer_specs`
    (names ``fc0, fc1, ...``); a conv network's names are ``conv1, conv2, fc3, ...``
    (1-based layer index).
    """
    conns = net.connections
    if all(c.kind == "dense" and c.pool is None for c in conns):
        return fc_layer_specs(net.sizes)
    n = len(conns)
    specs = []
    for i, c in enumerate(conns):
        hidden = i < n - 1
        structural = hidden and not (c.kind == "conv" and i == 0 and not prune_input_conv)
        kind = "conv" if c.kind == "conv" else "fc"
        specs.append(LayerSpec(f"{kind}{i + 1}", tuple(c.param_shape), kind, prunable=structural,
                               regenerates=structural))
    return specs


def _dead_units(pruned: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Pruned units without any present incoming synapse (bool per unit)."""
    pruned = np.asarray(pruned, bool)
    if mask is None:
        return np.zeros_like(pruned)
    m = np.asarray(mask) != 0
    return pruned & ~m.reshape(m.shape[0], -1).any(axis=1)


def _source_alive(spec: LayerSpec, prev_spec: LayerSpec, prev_dead: np.ndarray) -> np.ndarray:
    """Boolean array broadcastable to ``spec.shape``: True where the source unit lives.

    conv after anything: input channel ``j`` is unit ``j`` of the previous layer
    (``C_in`` must equal its unit count); fc: column ``j`` belongs to unit
    ``j // (N_in / N_prev)`` (channel-major flattening of a conv output).
    """
    n_prev = prev_dead.size
    n_in = spec.shape[1]
    if spec.kind == "conv":
        if n_in != n_prev:
            raise ValueError(f"layer {spec.name!r}: C_in={n_in} != units of {prev_spec.name!r} ({n_prev})")
        return (~prev_dead).reshape(1, n_in, 1, 1)
    if n_in % n_prev:
        raise ValueError(f"layer {spec.name!r}: N_in={n_in} is not a multiple of the units of "
                         f"{prev_spec.name!r} ({n_prev})")
    return np.repeat(~prev_dead, n_in // n_prev).reshape(1, n_in)


def removed_synapse_report(layers: Sequence[LayerSpec], masks: Sequence[np.ndarray | None],
                           pruned: Sequence[np.ndarray | None]) -> dict:
    """Removed synapses counted both ways, per layer and over all layers.

    For each layer name: ``synapses`` (weight entries), ``removed_masked`` (mask 0),
    ``removed_with_dead_sources`` (mask 0, or the source unit in the previous layer
    is dead -- pruned and without any present incoming synapse, so it never fires
    and the synapse carries nothing; a pruned unit that regrew synapses is not
    dead), the two ``fraction_*`` values, ``neurons``, ``neurons_pruned`` and
    ``neurons_dead``.  Key ``'all'`` sums the synapse counts over
    layers (fractions of all synapses).  A ``None`` mask means all present.
    """
    out = {}
    tot = {"synapses": 0, "removed_masked": 0, "removed_with_dead_sources": 0, "neurons": 0,
           "neurons_pruned": 0, "neurons_dead": 0}
    for i, spec in enumerate(layers):
        m = masks[i]
        present = np.ones(spec.shape, bool) if m is None else (np.asarray(m) != 0)
        n = int(present.size)
        masked = int(n - present.sum())
        live = present
        if i > 0 and pruned[i - 1] is not None:
            live = present & _source_alive(spec, layers[i - 1], _dead_units(pruned[i - 1], masks[i - 1]))
        dead = int(n - live.sum())
        npr = 0 if pruned[i] is None else int(np.asarray(pruned[i]).sum())
        ndead = 0 if pruned[i] is None else int(_dead_units(pruned[i], m).sum())
        out[spec.name] = {"synapses": n, "removed_masked": masked, "removed_with_dead_sources": dead,
                          "fraction_masked": masked / n, "fraction_with_dead_sources": dead / n,
                          "neurons": spec.n_units, "neurons_pruned": npr, "neurons_dead": ndead}
        for k in tot:
            tot[k] += out[spec.name][k]
    tot["fraction_masked"] = tot["removed_masked"] / max(tot["synapses"], 1)
    tot["fraction_with_dead_sources"] = tot["removed_with_dead_sources"] / max(tot["synapses"], 1)
    out["all"] = tot
    return out


def _quantiles(x: np.ndarray, sel: np.ndarray) -> tuple[float, float, float]:
    v = x[sel]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    q = np.quantile(v, [0.05, 0.5, 0.95])
    return (float(q[0]), float(q[1]), float(q[2]))


class StructureSchedule:
    """Runs the SD-SNN structural steps over a list of :class:`LayerSpec`.

    State (all in :meth:`state_dict`): step counter ``t``; per layer the spine state
    (``spines[i]``, None before step 0 or for untracked layers), the pruned units
    (``pruned[i]``, bool per unit, None for non-prunable layers), the rate ``rho[i]``
    (fraction, NaN for non-prunable layers), the regeneration counters
    (``regen_count[i]``, ``regen_prev[i]`` per slot); and the event log ``log``.
    """

    def __init__(self, layers: Sequence[LayerSpec], config: SDSNNConfig | None = None):
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("StructureSchedule needs at least one layer")
        names = [l.name for l in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}")
        self.config = config if config is not None else SDSNNConfig()
        for i, spec in enumerate(self.layers):
            if spec.prunable and spec.kind == "conv" and i + 1 >= len(self.layers):
                raise ValueError(f"prunable conv layer {spec.name!r} needs a following layer "
                                 "(its rate rule uses C_{l+1})")
        self.t = 0
        self.spines: list[_sp.SpineState | None] = [None] * len(self.layers)
        self.pruned = [np.zeros(s.n_units, bool) if s.prunable else None for s in self.layers]
        self.rho = [self.config.rho0(s.kind) if s.prunable else math.nan for s in self.layers]
        self.regen_count = [np.zeros(_rg.slot_shape(s.shape, s.kind)) if s.regenerates else None
                            for s in self.layers]
        self.regen_prev = [np.zeros(_rg.slot_shape(s.shape, s.kind), bool) if s.regenerates else None
                           for s in self.layers]
        self.log = StructureLog(names)

    # ------------------------------------------------------------------ checks
    def _as_list(self, x, what: str, allow_none_items: bool = True) -> list:
        if x is None:
            return [None] * len(self.layers)
        if isinstance(x, Mapping):
            unknown = set(x) - {l.name for l in self.layers}
            if unknown:
                raise ValueError(f"{what}: unknown layer names {sorted(unknown)}")
            return [x.get(l.name) for l in self.layers]
        x = list(x)
        if len(x) != len(self.layers):
            raise ValueError(f"{what}: expected {len(self.layers)} entries (one per layer), got {len(x)}")
        return x

    def _validate(self, W, M, B, G) -> None:
        t = self.t
        for i, spec in enumerate(self.layers):
            w = W[i]
            if not isinstance(w, np.ndarray) or w.dtype.kind != "f":
                raise TypeError(f"layer {spec.name!r}: weights must be a floating numpy array (modified in "
                                f"place), got {type(w).__name__}")
            if w.shape != spec.shape:
                raise ValueError(f"layer {spec.name!r}: weights shape {w.shape} != declared {spec.shape}")
            if not np.all(np.isfinite(w)):
                raise FloatingPointError(f"layer {spec.name!r}: non-finite weights at structural step {t}")
            m = M[i]
            if m is None:
                if spec.prunable or spec.regenerates:
                    raise ValueError(f"layer {spec.name!r}: a prunable/regenerating layer needs a mask")
            else:
                if not isinstance(m, np.ndarray) or m.shape != spec.shape:
                    raise ValueError(f"layer {spec.name!r}: mask must be a numpy array of shape {spec.shape}")
                if not np.all((m == 0) | (m == 1)):
                    raise ValueError(f"layer {spec.name!r}: mask entries must be 0 or 1")
            b = B[i]
            if b is not None and (not isinstance(b, np.ndarray) or b.shape != (spec.n_units,)):
                raise ValueError(f"layer {spec.name!r}: bias must be a numpy array of shape ({spec.n_units},)")
            g = G[i]
            if g is not None:
                g = np.asarray(g)
                if g.shape != spec.shape:
                    raise ValueError(f"layer {spec.name!r}: grad_score shape {g.shape} != {spec.shape}")
                if not np.all(np.isfinite(g)):
                    raise FloatingPointError(f"layer {spec.name!r}: non-finite grad_score at step {t}")
            if (self.config.mode == "strict" and spec.regenerates and t > self.config.structure_after
                    and g is None):
                raise ValueError(f"layer {spec.name!r}: strict mode needs grad_score from step "
                                 f"{self.config.structure_after + 1} on (this is step {t})")

    # -------------------------------------------------------------------- step
    def step(self, weights, masks, biases=None, grad_score=None) -> dict:
        """Run structural step ``self.t`` and advance the counter; see the module doc.

        ``weights``/``masks``/``biases``/``grad_score``: sequences aligned with the
        layers (or dicts by layer name); ``None`` entries allowed for masks of
        non-structural layers, biases and grad_score.  Arrays are modified in place;
        everything is validated before anything is modified.  Returns ``{layer name:
        stats record}`` (the fields of ``events.STAT_FIELDS``).
        """
        cfg = self.config
        W = self._as_list(weights, "weights")
        M = self._as_list(masks, "masks")
        B = self._as_list(biases, "biases")
        G = self._as_list(grad_score, "grad_score")
        self._validate(W, M, B, G)
        t = self.t
        L = len(self.layers)
        before = [None if m is None else (m != 0) for m in M]
        st = [dict(step=t, layer=i, candidates=0, restored=0, clipped=0, expanded_pos=0, expanded_neg=0,
                   contracted=0, newly_pruned=0, regen_percentile=math.nan, regen_threshold=math.nan)
              for i in range(L)]

        def masked(i):
            w = W[i].astype(np.float64)
            return w if M[i] is None else w * (M[i] != 0)

        # 1. spine ranges
        for i, spec in enumerate(self.layers):
            if not spec.tracks_spines:
                continue
            if t == 0 or self.spines[i] is None:
                self.spines[i] = _sp.init_spines(masked(i))
            elif spec.kind == "fc" or cfg.conv_spine_updates:
                self.spines[i], info = _sp.update_spines(self.spines[i], masked(i), cfg.T_s, cfg.contraction,
                                                         cfg.count_transitions)
                st[i].update(expanded_pos=info.expanded_pos, expanded_neg=info.expanded_neg,
                             contracted=info.contracted)

        # 2. constraint
        if t > cfg.constraint_after:
            for i, spec in enumerate(self.layers):
                if spec.is_constrained and self.spines[i] is not None:
                    st[i]["clipped"] = _sp.constrain_inplace(W[i], self.spines[i])

        if t > cfg.structure_after and (cfg.freeze_after is None or t < cfg.freeze_after):
            # 3a. regeneration (all layers), before pruning
            for i, spec in enumerate(self.layers):
                if spec.regenerates:
                    self._regenerate(i, t, W[i], M[i], G[i], st[i])
            # 3b. pruning then the layer's rate update, layer by layer
            for i, spec in enumerate(self.layers):
                if spec.prunable:
                    self._prune(i, t, M[i], st[i])

        # 4. apply masks, silence pruned units, log
        for i, spec in enumerate(self.layers):
            if M[i] is not None:
                W[i][M[i] == 0] = 0
            if self.pruned[i] is not None and cfg.zero_pruned_biases and B[i] is not None:
                B[i][self.pruned[i]] = 0
            if M[i] is not None:
                now = M[i] != 0
                rem = np.flatnonzero(before[i] & ~now)
                res = np.flatnonzero(~before[i] & now)
                self.log.record_events(t, i, rem, REMOVED)
                self.log.record_events(t, i, res, RESTORED)
                st[i]["removed"] = int(rem.size)
                present = now
            else:
                present = np.ones(spec.shape, bool)
            sp = self.spines[i]
            qp = _quantiles(sp.r_pos, present) if sp is not None else (math.nan,) * 3
            qn = _quantiles(sp.r_neg, present) if sp is not None else (math.nan,) * 3
            st[i].update(
                synapses_total=int(present.size), synapses_present=int(present.sum()),
                neurons_total=spec.n_units,
                neurons_pruned=0 if self.pruned[i] is None else int(self.pruned[i].sum()),
                neurons_dead=0 if self.pruned[i] is None else int(_dead_units(self.pruned[i], M[i]).sum()),
                rho=float(self.rho[i]),
                r_pos_q05=qp[0], r_pos_q50=qp[1], r_pos_q95=qp[2],
                r_neg_q05=qn[0], r_neg_q50=qn[1], r_neg_q95=qn[2],
            )
            self.log.record_stats(st[i])
        self.t += 1
        return {spec.name: dict(self.log.stats[-L + i]) for i, spec in enumerate(self.layers)}

    def _regenerate(self, i, t, w, m, g, st) -> None:
        cfg, spec = self.config, self.layers[i]
        p = _rt.regeneration_percentile(t, cfg.p0(spec.kind), cfg.structure_after, cfg.p_growth, cfg.p_max)
        if cfg.mode == "reference":
            values = w.astype(np.float64)
        else:
            values = _rg.virtual_weights(w, m, g)
            if t > cfg.constraint_after and spec.is_constrained and self.spines[i] is not None:
                values = _sp.constrain(values, self.spines[i])
        scores = _rg.slot_scores(values, spec.kind)
        removed = _rg.removed_slots(m, spec.kind)
        excluded = None if cfg.regrow_pruned_units else self.pruned[i]
        cand, thr = _rg.regeneration_candidates(scores, removed, excluded, p)
        self.regen_count[i], restore = _rg.update_persistence(
            self.regen_count[i], cand, cfg.G(spec.kind), self.regen_prev[i], cfg.count_transitions)
        self.regen_prev[i] = cand
        if cfg.mode == "strict" and cfg.strict_restore == "virtual" and restore.any():
            sel = restore if spec.kind == "fc" else np.broadcast_to(restore[:, :, None, None], spec.shape)
            w[sel] = values[sel]
        _rg.restore_slots(m, restore, spec.kind)
        st.update(regen_percentile=p, regen_threshold=thr, candidates=int(cand.sum()),
                  restored=int(restore.sum()))

    def _prune(self, i, t, m, st) -> None:
        cfg, spec = self.config, self.layers[i]
        sp = self.spines[i]
        new_pruned, newly = _pr.prune_step(sp.r_pos, sp.r_neg, m, self.pruned[i], self.rho[i], cfg.min_alive)
        self.pruned[i] = new_pruned
        if cfg.regrow_pruned_units:
            # only the newly pruned rows: synapses regrown into earlier pruned units stay
            sel = np.zeros_like(new_pruned)
            sel[newly] = True
            _pr.apply_unit_pruning(m, sel)
        else:
            _pr.apply_unit_pruning(m, new_pruned)
        st["newly_pruned"] = int(newly.size)
        P = int(new_pruned.sum())
        if spec.kind == "fc":
            self.rho[i] = _rt.update_fc_rate(self.rho[i], t, spec.n_units, P, cfg.n_out,
                                             centre=cfg.decay_centre, end=cfg.fc_decay_end, late=cfg.late_rate,
                                             scale=cfg.fc_decay_scale, unit=cfg.rate_unit, rho_max=cfg.rho_max)
        else:
            nxt = self.layers[i + 1]
            p_next = 0 if self.pruned[i + 1] is None else int(self.pruned[i + 1].sum())
            self.rho[i] = _rt.update_conv_rate(self.rho[i], t, spec.n_units, P, nxt.n_units, p_next,
                                               centre=cfg.decay_centre, scale=cfg.conv_decay_scale,
                                               unit=cfg.rate_unit, rho_max=cfg.rho_max)

    # --------------------------------------------------------------- reporting
    def neurons_pruned(self) -> dict:
        """``{layer name: pruned unit count}`` (0 for non-prunable layers)."""
        return {s.name: 0 if p is None else int(p.sum()) for s, p in zip(self.layers, self.pruned)}

    def removed_fractions(self, masks) -> dict:
        """:func:`removed_synapse_report` for these masks and the schedule's pruned units."""
        return removed_synapse_report(self.layers, self._as_list(masks, "masks"), self.pruned)

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """Everything needed to continue identically, as a flat dict of numpy arrays
        (``np.savez``-able without pickling): ``t``, config, layer specs, per-layer
        spine state, pruned units, rho, regeneration counters, and the event log."""
        d = {
            "schedule.t": np.array(self.t, np.int64),
            "schedule.config": np.array(self.config.to_json()),
            "schedule.layers": np.array(json.dumps([s.to_dict() for s in self.layers], sort_keys=True)),
        }
        for i, spec in enumerate(self.layers):
            pre = f"layer{i}."
            d[pre + "has_spines"] = np.array(self.spines[i] is not None)
            if self.spines[i] is not None:
                d.update(self.spines[i].to_dict(pre + "spines."))
            if self.pruned[i] is not None:
                d[pre + "pruned"] = self.pruned[i].copy()
            d[pre + "rho"] = np.array(self.rho[i], np.float64)
            if self.regen_count[i] is not None:
                d[pre + "regen_count"] = self.regen_count[i].copy()
                d[pre + "regen_prev"] = self.regen_prev[i].copy()
        d.update(self.log.to_dict("log."))
        return d

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict` output (e.g. an ``np.load``-ed npz).  The saved
        config and layer specs must equal this schedule's (ValueError otherwise)."""
        saved_cfg = json.loads(str(np.asarray(state["schedule.config"])))
        if SDSNNConfig.from_dict(saved_cfg) != self.config:
            raise ValueError("load_state_dict: saved SDSNNConfig differs from this schedule's config")
        saved_layers = json.loads(str(np.asarray(state["schedule.layers"])))
        if saved_layers != [s.to_dict() for s in self.layers]:
            raise ValueError("load_state_dict: saved layer specs differ from this schedule's layers")
        self.t = int(np.asarray(state["schedule.t"]))
        for i, spec in enumerate(self.layers):
            pre = f"layer{i}."
            if bool(np.asarray(state[pre + "has_spines"])):
                sp = _sp.SpineState.from_dict(state, pre + "spines.")
                if sp.shape != spec.shape:
                    raise ValueError(f"load_state_dict: spine state of {spec.name!r} has shape {sp.shape}")
                self.spines[i] = sp
            else:
                self.spines[i] = None
            if self.pruned[i] is not None:
                self.pruned[i] = np.array(state[pre + "pruned"], dtype=bool)
            self.rho[i] = float(np.asarray(state[pre + "rho"]))
            if self.regen_count[i] is not None:
                self.regen_count[i] = np.array(state[pre + "regen_count"], dtype=np.float64)
                self.regen_prev[i] = np.array(state[pre + "regen_prev"], dtype=bool)
        self.log = StructureLog.from_dict(state, "log.")
