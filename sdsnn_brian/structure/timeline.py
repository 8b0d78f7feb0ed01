"""The structural timeline in the run's own terms: how many structural steps a run takes.

SD-SNN's timeline is counted in *structural steps* (``t = 0, 1, 2, ...``): the spine
constraint from ``t > T_s``, regeneration and pruning from ``t > 2*T_s``, regeneration
fading as its percentile climbs to ``p_max``.  How many steps a run takes depends on
the data size, the batch size, the epochs and how often the trainer calls the schedule
(``structure_every`` minibatches; ``None``: once per epoch).  A run that takes too few
steps trains a dense network under the name "SD-SNN" -- this module is what prevents that.

* :func:`structural_steps` -- the steps a run will take.
* :func:`timeline_needs` -- the steps a config needs: to prune once (``prune``), for
  regeneration to fade (``fade``), to its freeze step if any (``complete``).
* :func:`fit_timeline` -- choose ``structure_every`` (from a number of structural steps per
  epoch) and, when even one step per minibatch is too few, the timeline's compression, so
  the whole timeline fits the run; explicit choices win.  Returns a :class:`TimelinePlan`.
* :func:`check_timeline` -- refuse (:class:`ShortTimelineError`) a run that will take fewer
  steps than its timeline needs to prune once, naming the numbers and the options to change.

All are plain functions of numbers and an :class:`~sdsnn_brian.structure.SDSNNConfig`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

__all__ = ["ShortTimelineError", "TimelinePlan", "structural_steps", "timeline_needs", "fit_timeline",
           "check_timeline", "DEFAULT_STEPS_PER_EPOCH", "COMMAND_LINE_HINT"]

#: Structural steps per epoch when nothing else is said: the MNIST protocols' 64 minibatches
#: with a step every 8 (so their results stay what they were).
DEFAULT_STEPS_PER_EPOCH = 8


#: What to change, in the options of ``sdsnn train`` and the protocols, when a run is too short.
COMMAND_LINE_HINT = ("Leave --structure-every and --compress out (they are then fitted to the run), take a step "
                     "more often (--structure-every), train more --epochs, compress the timeline (--compress), "
                     "or pass --allow-short-structure to run it anyway")


class ShortTimelineError(ValueError):
    """A run takes fewer structural steps than its SD-SNN timeline needs to prune at all."""


def structural_steps(n_samples: int, batch_size: int, epochs: int, structure_every: Optional[int]) -> int:
    """Structural steps the trainer takes over ``epochs`` epochs of ``n_samples`` samples.

    The trainer steps after every ``structure_every``-th minibatch of an epoch (the count
    restarts each epoch), or once per epoch when ``structure_every`` is ``None`` or 0.
    """
    n_batches = -(-int(n_samples) // int(batch_size))
    per_epoch = 1 if not structure_every else n_batches // int(structure_every)
    return int(epochs) * per_epoch


def _fade_step(config) -> int:
    """The first step at which the regeneration percentile has reached ``p_max`` (for every layer kind)."""
    gap = config.p_max - min(config.p0_fc, config.p0_conv)
    first = config.structure_after + 1
    if gap <= 1 or config.p_growth <= 1:  # p(t) starts at p_max (or never grows: fades at once or never)
        return first
    return first + int(math.ceil(math.log(gap) / math.log(config.p_growth) - 1e-12))


def timeline_needs(config) -> dict:
    """Steps (counted as calls, so step ``t`` needs ``t + 1``) that ``config`` needs.

    ``prune``: the first pruning step, ``structure_after + 1``; ``fade``: regeneration has
    faded (``p(t) = p_max``); ``complete``: the later of ``fade`` and ``freeze_after``.
    With the reference constants: 38, 77, 77.
    """
    prune = config.structure_after + 2
    fade = _fade_step(config) + 1
    complete = max(fade, (config.freeze_after + 1) if config.freeze_after is not None else 0)
    return {"prune": prune, "fade": fade, "complete": complete}


@dataclass(frozen=True)
class TimelinePlan:
    """What :func:`fit_timeline` chose, and why (JSON-able with :meth:`to_dict`)."""

    structure_every: int
    compress: float
    steps: int
    needs: dict
    chosen: str  # 'given' (both explicit), or what was chosen from the run's length

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        n = self.needs
        return (f"{self.steps} structural steps (one every {self.structure_every} minibatches, timeline "
                f"compressed x{self.compress:g}; it first prunes at its {n['prune']}th step and is complete after "
                f"{n['complete']}; {self.chosen})")


def fit_timeline(config, n_samples: int, batch_size: int, epochs: int, *, structure_every: Optional[int] = None,
                 compress: Optional[float] = None, steps_per_epoch: int = DEFAULT_STEPS_PER_EPOCH):
    """``(config', plan)``: the structural timeline fitted to a run of this length.

    ``structure_every`` (None: chosen) -- one step every ``max(1, n_batches // steps_per_epoch)``
    minibatches, so an epoch holds about ``steps_per_epoch`` steps whatever the data size.
    ``compress`` (None: chosen) -- 1 while the run holds the whole timeline
    (:func:`timeline_needs` ``complete``); otherwise the smallest factor (in steps of 0.25)
    whose compressed timeline (:meth:`SDSNNConfig.compressed`) fits.  An explicit value
    is kept as it is; the check that the run can prune at all is :func:`check_timeline`'s.
    ``config'`` is ``config.compressed(factor)`` (``config`` itself for factor 1).
    """
    if int(steps_per_epoch) < 1:
        raise ValueError(f"structural steps per epoch must be positive, got {steps_per_epoch}")
    n_batches = -(-int(n_samples) // int(batch_size))
    chosen = []
    if structure_every is None:
        structure_every = max(1, n_batches // int(steps_per_epoch))
        chosen.append(f"a step every {structure_every} of {n_batches} minibatches for {steps_per_epoch} per epoch")
    steps = structural_steps(n_samples, batch_size, epochs, structure_every)
    if compress is None:
        factor = 1.0
        if steps > 0:
            while timeline_needs(config.compressed(factor) if factor != 1.0 else config)["complete"] > steps \
                    and factor < 1e6:
                factor += 0.25
        compress = factor
        if factor != 1.0:
            chosen.append(f"the timeline compressed x{factor:g} to end within the run's {steps} steps")
    fitted = config.compressed(compress) if compress != 1.0 else config
    plan = TimelinePlan(int(structure_every), float(compress), int(steps), timeline_needs(fitted),
                        "; ".join(chosen) if chosen else "given")
    return fitted, plan


def check_timeline(config, steps: int, *, allow_short: bool = False, options: str = "") -> None:
    """Raise :class:`ShortTimelineError` when ``steps`` structural steps cannot prune once.

    The message says how many steps the run takes, how many the timeline needs, and what
    to change (``options``: the option names the caller offers, e.g. the command line's).
    ``allow_short=True`` lets a run go on anyway (for example to study the spine constraint alone).
    """
    needs = timeline_needs(config)
    if steps >= needs["prune"] or allow_short:
        return
    hint = options or ("call the schedule more often (structure_every), train more epochs, compress the "
                       "timeline (SDSNNConfig.compressed), or pass allow_short_structure=True")
    raise ShortTimelineError(
        f"this run takes {steps} structural step{'s' if steps != 1 else ''} but the SD-SNN timeline needs "
        f"{needs['prune']} to prune at all (pruning starts at step {needs['prune'] - 1}, counted from 0) and "
        f"{needs['complete']} to complete: nothing would be pruned. {hint}")
