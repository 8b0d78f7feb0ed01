"""Input encoders: static images (or pre-binned frames) to spike rasters.

Every encoder is a small callable object::

    spikes = encoder(images, steps, rng)     # images float [B, n] in [0, 1]
    spikes.shape == (steps, B, n); spikes.dtype == uint8 (0/1)

and has ``config()``, a plain dict for run records, from which
:func:`get_encoder` rebuilds it (``get_encoder(enc.config())``).  Results are a
function of the inputs and the state of ``rng`` only.

Encoders
--------
:class:`Rate`
    Bernoulli (rate) coding, as in the SD-SNN reference: at every step a pixel
    spikes when ``gain * x`` exceeds a uniform random number, i.e. with
    probability ``p = clip(gain * x, 0, 1)``.
:class:`Latency`
    Time-to-first-spike: each pixel spikes at most once, brighter earlier;
    pixels at or below ``threshold`` never spike.  Linear: ``t = round((1 - x)
    (T - 1))``.  RC (``linear=False``): the time an RC membrane with time
    constant ``tau`` (in steps), driven by a constant input ``x`` from rest,
    takes to reach ``threshold``: ``t = round(tau * ln(x / (x - threshold)))``;
    pixels whose time falls after ``T - 1`` do not spike.
:class:`Direct`
    Frames that are already binary ``[T, B, n]`` (or ``[B, T, n]`` with
    ``time_first=False``), e.g. binned event-camera data, validated and passed
    through.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["Encoder", "Rate", "Latency", "Direct", "get_encoder", "ENCODERS"]


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return int(steps)


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


def _check_images(images, who: str) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise TypeError(f"{who}: images must be a numeric array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{who}: images must have shape [B, n] (batch, inputs), got shape {x.shape}")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{who}: images contains NaN or inf values")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(
            f"{who}: image values must lie in [0, 1], got range [{x.min():g}, {x.max():g}]; "
            "scale them first (e.g. divide bytes by 255)"
        )
    return x


class Encoder:
    """Base class: ``__call__(images, steps, rng) -> uint8 [T, B, n]`` and ``config()``."""

    name = "encoder"

    def __call__(self, images, steps, rng):  # pragma: no cover - interface
        raise NotImplementedError

    def config(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.config().items()))))


class Rate(Encoder):
    """Bernoulli rate code: spike with probability ``clip(gain * x, 0, 1)`` each step."""

    name = "rate"

    def __init__(self, gain: float = 1.0):
        gain = float(gain)
        if not np.isfinite(gain) or gain < 0:
            raise ValueError(f"Rate: gain must be finite and >= 0, got {gain}")
        self.gain = gain

    def __call__(self, images, steps, rng):
        x = _check_images(images, "Rate")
        T = _check_steps(steps)
        rng = _check_rng(rng)
        p = np.clip(self.gain * x, 0.0, 1.0)
        out = np.empty((T,) + p.shape, dtype=np.uint8)
        for t in range(T):  # one step at a time keeps memory at one frame of randoms
            # reference rule: spike when the intensity exceeds a uniform random number
            out[t] = p > rng.random(p.shape)
        return out

    def config(self) -> dict:
        return {"name": self.name, "gain": self.gain}


class Latency(Encoder):
    """Time-to-first-spike code: at most one spike per pixel, brighter pixels earlier.

    Parameters
    ----------
    tau:
        RC time constant in steps (used only when ``linear=False``).
    threshold:
        Pixels with ``x <= threshold`` never spike.
    linear:
        True: ``t = round((1 - x) * (T - 1))`` (x = 1 at step 0, x -> 0 at the
        last step).  False: RC charging time ``t = round(tau * ln(x / (x -
        threshold)))``; spikes later than ``T - 1`` are dropped.
    """

    name = "latency"

    def __init__(self, tau: float = 5.0, threshold: float = 0.01, linear: bool = True):
        tau = float(tau)
        threshold = float(threshold)
        if not np.isfinite(tau) or tau <= 0:
            raise ValueError(f"Latency: tau must be finite and > 0, got {tau}")
        if not np.isfinite(threshold) or not 0.0 <= threshold < 1.0:
            raise ValueError(f"Latency: threshold must lie in [0, 1), got {threshold}")
        self.tau = tau
        self.threshold = threshold
        self.linear = bool(linear)

    def spike_times(self, images, steps) -> np.ndarray:
        """Spike step per pixel, float [B, n]; ``inf`` where the pixel does not spike."""
        x = _check_images(images, "Latency")
        T = _check_steps(steps)
        fires = x > self.threshold
        t = np.full(x.shape, np.inf)
        if self.linear:
            t[fires] = np.rint((1.0 - x[fires]) * (T - 1))
        else:
            xf = x[fires]
            t[fires] = np.rint(self.tau * np.log(xf / (xf - self.threshold)))
            t[t > T - 1] = np.inf
        return t

    def __call__(self, images, steps, rng=None):
        # deterministic: rng is accepted for a uniform interface and not drawn from
        if rng is not None:
            _check_rng(rng)
        t = self.spike_times(images, steps)
        T = int(steps)
        out = np.zeros((T,) + t.shape, dtype=np.uint8)
        b, i = np.nonzero(np.isfinite(t))
        out[t[b, i].astype(np.int64), b, i] = 1
        return out

    def config(self) -> dict:
        return {"name": self.name, "tau": self.tau, "threshold": self.threshold, "linear": self.linear}


class Direct(Encoder):
    """Pass-through for binary frames that are already spike rasters.

    ``frames`` has shape ``[T, B, n]`` (``time_first=True``) or ``[B, T, n]``
    (``time_first=False``); every value must be 0 or 1.  ``steps``, when
    given, must equal ``T``.  Returns uint8 ``[T, B, n]``.
    """

    name = "direct"

    def __init__(self, time_first: bool = True):
        self.time_first = bool(time_first)

    def __call__(self, frames, steps=None, rng=None):
        f = np.asarray(frames)
        if f.dtype == object or not (np.issubdtype(f.dtype, np.number) or f.dtype == bool):
            raise TypeError(f"Direct: frames must be a numeric array, got dtype {f.dtype}")
        expected = "[T, B, n]" if self.time_first else "[B, T, n]"
        if f.ndim != 3:
            raise ValueError(f"Direct: frames must have shape {expected}, got shape {f.shape}")
        if np.issubdtype(f.dtype, np.floating) and not np.all(np.isfinite(f)):
            raise ValueError("Direct: frames contains NaN or inf values")
        if not self.time_first:
            f = f.transpose(1, 0, 2)
        if steps is not None and _check_steps(steps) != f.shape[0]:
            raise ValueError(f"Direct: steps={steps} but the frames hold {f.shape[0]} time steps")
        if f.dtype != bool and not np.all((f == 0) | (f == 1)):
            bad = f[(f != 0) & (f != 1)]
            raise ValueError(
                f"Direct: frames must be binary (0/1), found value {bad.flat[0]!r}; "
                "clip or threshold event counts first"
            )
        return np.ascontiguousarray(f, dtype=np.uint8)

    def config(self) -> dict:
        return {"name": self.name, "time_first": self.time_first}


ENCODERS = {"rate": Rate, "latency": Latency, "direct": Direct}


def get_encoder(spec, **kwargs):
    """An encoder from a name, a ``config()`` dict, or an encoder object.

    ``get_encoder('rate', gain=0.5)``, ``get_encoder({'name': 'latency',
    'tau': 3.0})``; an object (any callable) is returned unchanged.
    Unknown names raise :class:`ValueError` listing the known ones.
    """
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name is None:
            raise ValueError(f"encoder config needs a 'name' (one of {sorted(ENCODERS)}), got {spec}")
        spec.update(kwargs)
        return get_encoder(name, **spec)
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key not in ENCODERS:
            raise ValueError(f"unknown encoder {spec!r}; known encoders: {', '.join(sorted(ENCODERS))}")
        return ENCODERS[key](**kwargs)
    if callable(spec):
        if kwargs:
            raise TypeError("keyword arguments are only accepted with an encoder name")
        return spec
    raise ValueError(
        f"cannot make an encoder from {spec!r}; pass one of {', '.join(sorted(ENCODERS))}, "
        "a config dict or an encoder object"
    )
