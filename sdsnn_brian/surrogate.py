"""Surrogate derivatives of the spike function.

The spike ``s = H(u - theta)`` has derivative zero almost everywhere, so the
backward pass (:mod:`sdsnn_brian.gradient`) replaces ``ds/du`` with a smooth or
boxed bump ``sg'(x)`` of ``x = u - theta``, measured in the membrane's unit (the
same plain floats as the recorded membrane).

Each surrogate has one shape parameter:

``'rectangular'`` (``width``, default 1.0)
    ``1/width`` where ``|x| < width/2``, else 0.  With ``width=1`` this is the
    SD-SNN reference (``1`` where ``|u - 0.5| < 0.5`` for ``theta = 0.5``).
``'sigmoid'`` (``scale`` k, default 5.0)
    ``k * sig(k x) * (1 - sig(k x))``, the derivative of ``sig(k x)``.
``'fast_sigmoid'`` (``slope``, default 25.0)
    ``1 / (1 + slope*|x|)**2`` (SuperSpike).  Note: unlike the other three this
    is not normalised; its integral over the real line is ``2/slope``.
``'arctan'`` (``alpha``, default 2.0)
    ``(alpha/2) / (1 + (pi/2 * alpha * x)**2)``, the derivative of
    ``arctan(pi/2 * alpha * x)/pi + 1/2``.

:func:`get_surrogate` turns a name, a dict (``{'name': 'sigmoid', 'scale': 4}``,
as written by :meth:`Surrogate.config`) or a :class:`Surrogate` into a surrogate.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["Surrogate", "get_surrogate", "SURROGATES"]

#: name -> (parameter name, default value)
SURROGATES = {
    "rectangular": ("width", 1.0),
    "sigmoid": ("scale", 5.0),
    "fast_sigmoid": ("slope", 25.0),
    "arctan": ("alpha", 2.0),
}


def _normalise_name(name) -> str:
    if not isinstance(name, str):
        raise ValueError(f"surrogate name must be a string, got {name!r}; known: {sorted(SURROGATES)}")
    key = name.strip().lower().replace("-", "_")
    if key not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; known surrogates: {', '.join(sorted(SURROGATES))}")
    return key


def _check_param(name: str, pname: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"surrogate {name!r}: parameter {pname!r} must be a positive number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"surrogate {name!r}: parameter {pname!r} must be positive and finite, got {value!r}")
    return value


class Surrogate:
    """A surrogate derivative ``ds/du`` as a function of ``x = u - theta``.

    Parameters
    ----------
    name : str
        One of :data:`SURROGATES` (``'rectangular'``, ``'sigmoid'``,
        ``'fast_sigmoid'``, ``'arctan'``).
    param : float, optional
        The shape parameter (``width``, ``scale``, ``slope`` or ``alpha``); the
        default of that surrogate when omitted.  Must be positive.
    """

    __slots__ = ("_name", "_param")

    def __init__(self, name: str, param: float | None = None):
        key = _normalise_name(name)
        pname, default = SURROGATES[key]
        self._name = key
        self._param = _check_param(key, pname, default if param is None else param)

    @property
    def name(self) -> str:
        return self._name

    @property
    def param_name(self) -> str:
        """Name of the shape parameter (``'width'``, ``'scale'``, ``'slope'``, ``'alpha'``)."""
        return SURROGATES[self._name][0]

    @property
    def param(self) -> float:
        """Value of the shape parameter."""
        return self._param

    def derivative(self, x, out=None):
        """``sg'(x)`` elementwise; ``x = u - theta`` (array-like, model units).

        Returns a numpy array of ``x``'s shape; float32 input stays float32,
        anything else is computed in float64.  ``out``: a float array of ``x``'s
        shape to write the result into (it may be ``x`` itself); returned.
        """
        x = np.asarray(x)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        p = self._param
        if out is not None:
            if self._name == "rectangular":  # in place, no temporaries
                np.abs(x, out=out)
                np.less(out, x.dtype.type(0.5 * p), out=out)
                out *= x.dtype.type(1.0 / p)
            else:
                np.copyto(out, self.derivative(x), casting="same_kind")
            return out
        if self._name == "rectangular":
            out = (np.abs(x) < 0.5 * p).astype(x.dtype)
            out *= 1.0 / p
            return out
        if self._name == "sigmoid":
            # k sig(y)(1 - sig(y)) = k e^{-|y|} / (1 + e^{-|y|})^2, stable for large |y|
            e = np.exp(-np.abs(p * x))
            return p * e / (1.0 + e) ** 2
        with np.errstate(over="ignore"):  # huge |x|: the bump is 0, as it should be
            if self._name == "fast_sigmoid":
                return 1.0 / (1.0 + p * np.abs(x)) ** 2
            # arctan
            return (0.5 * p) / (1.0 + (0.5 * math.pi * p * x) ** 2)

    __call__ = derivative

    def config(self) -> dict:
        """A plain dict that :func:`get_surrogate` turns back into this surrogate."""
        return {"name": self._name, self.param_name: self._param}

    def __repr__(self) -> str:
        return f"Surrogate({self._name!r}, {self.param_name}={self._param!r})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Surrogate):
            return NotImplemented
        return self._name == other._name and self._param == other._param

    def __hash__(self) -> int:
        return hash((self._name, self._param))


def get_surrogate(spec="rectangular", **params) -> Surrogate:
    """A :class:`Surrogate` from a name, a config dict or a Surrogate.

    ``params`` (e.g. ``width=0.5``) set or override the shape parameter; the only
    accepted keyword is that surrogate's parameter name.

    >>> get_surrogate('sigmoid', scale=4.0)
    Surrogate('sigmoid', scale=4.0)
    >>> get_surrogate({'name': 'rectangular', 'width': 0.5})
    Surrogate('rectangular', width=0.5)
    """
    if isinstance(spec, Surrogate):
        if not params:
            return spec
        name = spec.name
        merged = {spec.param_name: spec.param}
        merged.update(params)
        params = merged
    elif isinstance(spec, dict):
        d = dict(spec)
        if "name" not in d:
            raise ValueError(f"surrogate spec {spec!r} has no 'name'; known surrogates: {', '.join(sorted(SURROGATES))}")
        name = d.pop("name")
        d.update(params)
        params = d
    elif isinstance(spec, str):
        name = spec
    else:
        raise TypeError(f"surrogate spec must be a name, a dict or a Surrogate, got {type(spec).__name__}")
    key = _normalise_name(name)
    pname = SURROGATES[key][0]
    unknown = set(params) - {pname}
    if unknown:
        raise ValueError(
            f"surrogate {key!r} takes only the parameter {pname!r}; got {sorted(unknown)}"
        )
    return Surrogate(key, params.get(pname))
