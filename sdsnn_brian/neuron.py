"""Neuron models: Brian2 equations, and the discrete map they become on the clock.

A :class:`NeuronModel` is what a user declares: Brian2 equation text, the name of
the membrane variable, a threshold condition and a reset statement, with the
parameter values (Brian2 quantities) in ``namespace``.  Brian2 simulates it as
written.  The gradient needs the same model as a per-step map; :meth:`dynamics`
derives it from the declaration, so there is one statement of the model.

Which models the gradient supports
----------------------------------
The class the backward pass understands (and :meth:`NeuronModel.dynamics`
checks) is the one-variable linear membrane with constant coefficients::

    dv/dt = A*v + B        (A, B constants of ``namespace``; 'exact' or 'euler')
    threshold:  v > X   or   v >= X
    reset:      v = X   (hard reset)   or   v -= X / v = v - X   (subtraction)

Synaptic input arrives as instantaneous jumps ``v += w * unit``.  Per time step
Brian2 then runs, in the model's unit (``u`` the membrane, ``I_t`` the summed input
of step ``t``)::

    u_t   = a * u+_{t-1} + c + I_t          a = exp(A dt), c = B/A (a - 1)  ('exact')
    s_t   = [u_t > theta]                   a = 1 + A dt,  c = B dt         ('euler')
    u+_t  = v_reset if s_t else u_t         (hard)
    u+_t  = u_t - reset_amount * s_t        (subtraction)

Anything else (several coupled variables, a non-linear membrane, refractoriness,
a threshold on another variable, a reset touching other variables) is rejected
with :class:`UnsupportedModelError` naming what does not fit; a string that does not parse with
:class:`ModelSyntaxError` (a subclass) naming the field and its text.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["NeuronModel", "Dynamics", "UnsupportedModelError", "ModelSyntaxError"]


class UnsupportedModelError(ValueError):
    """The declared model is outside the class the gradient supports."""


class ModelSyntaxError(UnsupportedModelError):
    """A string of the declaration (equations, threshold, reset, init) does not parse."""


@dataclass(frozen=True)
class Dynamics:
    """The per-step map of one layer's neurons, in the model's unit (plain floats).

    ``u_t = a*u+_{t-1} + c + I_t``; spike when ``u_t > theta`` (``>=`` when
    ``inclusive``); after a spike the membrane becomes ``v_reset`` (``reset ==
    'hard'``) or drops by ``reset_amount`` (``reset == 'subtract'``).  Every sample
    starts from ``u+_{-1} = u_init``.
    """

    a: float
    c: float
    theta: float
    reset: str
    v_reset: float = 0.0
    reset_amount: float = 0.0
    u_init: float = 0.0
    inclusive: bool = False

    def spikes(self, u):
        """The threshold test on membrane values (numpy array)."""
        return (u >= self.theta) if self.inclusive else (u > self.theta)

    def after_reset(self, u, s):
        """The membrane after the reset, given membrane ``u`` and spikes ``s`` (0/1)."""
        if self.reset == "hard":
            return u * (1 - s) + self.v_reset * s
        return u - self.reset_amount * s


_THRESHOLD = re.compile(r"^\s*([A-Za-z_]\w*)\s*(>=|>)\s*(.+?)\s*$")
_RESET_HARD = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*(.+?)\s*$")
_RESET_SUB = re.compile(r"^\s*([A-Za-z_]\w*)\s*-=\s*(.+?)\s*$")


@dataclass(frozen=True)
class NeuronModel:
    """A spiking neuron declared as Brian2 equations.

    Parameters
    ----------
    name : str
        Short name (used in configurations, cache keys and reports).
    equations : str
        Brian2 equations; exactly one differential equation, for ``membrane``.
    membrane : str
        The membrane variable (it receives synaptic input, ``membrane += w*unit``).
    threshold, reset : str
        Brian2 threshold condition and reset statement.
    namespace : mapping
        Parameter values (Brian2 quantities or floats) used by the strings above.
    unit : Quantity or float
        The membrane's unit; weights, biases, recordings and surrogate widths are
        plain floats in this unit (``1`` for a dimensionless membrane).
    init : str
        Expression for the membrane value at the start of every sample.
    method : str
        Brian2 integration method: ``'exact'`` or ``'euler'``.
    """

    name: str
    equations: str
    membrane: str
    threshold: str
    reset: str
    namespace: Mapping = field(default_factory=dict)
    unit: object = 1.0
    init: str = "0"
    method: str = "exact"

    # -- evaluation helpers -------------------------------------------------
    def _syntax_error(self, what: str, text: str, exc, part=None) -> ModelSyntaxError:
        """The error for field ``what`` (``'threshold'``...) whose ``text`` failed to parse with ``exc``;
        ``part``: the piece of ``text`` that was being parsed."""
        kind = {"equations": "valid Brian2 equation text", "reset": "a valid statement"}.get(what, "a valid expression")
        detail = getattr(exc, "msg", None) or str(exc).strip()
        if part is not None and part.strip() != text.strip():
            detail = f"{detail} in {part!r}"
        return ModelSyntaxError(f"NeuronModel {self.name!r}: {what} {text!r} is not {kind}: {detail}")

    def _eval(self, expr: str, what: str | None = None, text: str | None = None):
        from brian2.core.namespace import DEFAULT_CONSTANTS, DEFAULT_FUNCTIONS, DEFAULT_UNITS

        scope = {k: v for k, v in DEFAULT_UNITS.items()}
        scope.update({k: getattr(v, "value", v) for k, v in DEFAULT_CONSTANTS.items()})
        scope.update({"exp": math.exp, "log": math.log, "sqrt": math.sqrt})
        scope.update(dict(self.namespace))
        try:
            return eval(expr, {"__builtins__": {}}, scope)  # constants only
        except SyntaxError as exc:
            if what is None:
                raise
            raise self._syntax_error(what, expr if text is None else text, exc, expr) from None
        except NameError as exc:
            raise UnsupportedModelError(
                f"model {self.name!r}: {expr!r} uses a name that is not in the model's namespace ({exc})"
            ) from None

    def _in_unit(self, value, what: str) -> float:
        """A quantity as a float in the model's unit, checking dimensions."""
        from brian2 import DimensionMismatchError, Quantity, have_same_dimensions

        unit = self.unit
        if not have_same_dimensions(value, unit):
            raise DimensionMismatchError(
                f"model {self.name!r}: {what} has dimensions of {Quantity(value).dim}, "
                f"the membrane unit is {Quantity(unit).dim}"
            )
        return float(Quantity(value) / Quantity(unit))

    # -- the discrete map --------------------------------------------------
    def dynamics(self, dt) -> Dynamics:
        """The per-step map Brian2 runs for this model with time step ``dt``.

        Raises :class:`UnsupportedModelError` when the declaration is outside the
        supported class (see the module docstring).
        """
        import sympy
        from brian2 import Equations, Quantity
        from brian2.equations.equations import EquationError
        from brian2.parsing.sympytools import str_to_sympy

        try:
            eqs = Equations(self.equations)
        except (EquationError, SyntaxError) as exc:
            raise self._syntax_error("equations", self.equations, exc) from None
        diff = list(eqs.diff_eq_names)
        if diff != [self.membrane]:
            raise UnsupportedModelError(
                f"model {self.name!r}: the gradient supports exactly one differential equation, "
                f"for the membrane {self.membrane!r}; found {diff or 'none'}"
            )
        if self.method not in ("exact", "euler"):
            raise UnsupportedModelError(
                f"model {self.name!r}: integration method {self.method!r}; use 'exact' or 'euler'"
            )
        try:
            rhs = str_to_sympy(eqs[self.membrane].expr.code)
        except SyntaxError as exc:
            raise self._syntax_error("equations", self.equations, exc, eqs[self.membrane].expr.code) from None
        v = sympy.Symbol(self.membrane, real=True)
        subs = {}
        for sym in rhs.free_symbols:
            if sym.name == self.membrane:
                subs[sym] = v
                continue
            if sym.name in eqs.names:
                raise UnsupportedModelError(
                    f"model {self.name!r}: d{self.membrane}/dt depends on the variable {sym.name!r}; "
                    "the gradient supports a membrane whose equation involves only itself and constants"
                )
            subs[sym] = float(Quantity(self._eval(sym.name)))  # SI value
        f = sympy.expand(rhs.subs(subs))
        A = f.diff(v)
        if A.free_symbols or f.diff(v, 2) != 0:
            raise UnsupportedModelError(
                f"model {self.name!r}: d{self.membrane}/dt = {eqs[self.membrane].expr.code} is not linear "
                "in the membrane with constant coefficients"
            )
        A = float(A)
        B = float(f.subs(v, 0))
        h = float(Quantity(dt))
        if self.method == "exact":
            a = math.exp(A * h)
            c_si = B / A * (a - 1.0) if A != 0 else B * h
        else:
            a = 1.0 + A * h
            c_si = B * h
        unit_si = float(Quantity(self.unit))
        c = c_si / unit_si

        m = _THRESHOLD.match(self.threshold)
        if not m or m.group(1) != self.membrane:
            raise UnsupportedModelError(
                f"model {self.name!r}: threshold {self.threshold!r} must read "
                f"'{self.membrane} > X' or '{self.membrane} >= X' with X a constant"
            )
        theta = self._in_unit(self._eval(m.group(3), "threshold", self.threshold), "the threshold")
        inclusive = m.group(2) == ">="

        reset_kind, v_reset, amount = self._parse_reset()
        u_init = self._in_unit(self._eval(self.init, "init"), "the initial value")
        return Dynamics(a=a, c=c, theta=theta, reset=reset_kind, v_reset=v_reset,
                        reset_amount=amount, u_init=u_init, inclusive=inclusive)

    def _parse_reset(self):
        stmts = [s for s in re.split(r"[\n;]", self.reset) if s.strip()]
        if len(stmts) != 1:
            raise UnsupportedModelError(
                f"model {self.name!r}: the reset must be one statement on the membrane, got {self.reset!r}"
            )
        stmt = stmts[0]
        m = _RESET_SUB.match(stmt)
        if m and m.group(1) == self.membrane:
            return "subtract", 0.0, self._in_unit(self._eval(m.group(2), "reset", self.reset), "the reset amount")
        m = _RESET_HARD.match(stmt)
        if m and m.group(1) == self.membrane:
            rhs = m.group(2)
            sub = re.match(rf"^{re.escape(self.membrane)}\s*-\s*(.+)$", rhs)
            if sub:
                return "subtract", 0.0, self._in_unit(self._eval(sub.group(1), "reset", self.reset),
                                                      "the reset amount")
            if re.search(rf"\b{re.escape(self.membrane)}\b", rhs):
                raise UnsupportedModelError(
                    f"model {self.name!r}: reset {self.reset!r} is neither a hard reset nor a subtraction"
                )
            return "hard", self._in_unit(self._eval(rhs, "reset", self.reset), "the reset value"), 0.0
        raise UnsupportedModelError(
            f"model {self.name!r}: reset {self.reset!r} must read '{self.membrane} = X' (hard) or "
            f"'{self.membrane} -= X' (subtraction)"
        )

    def with_params(self, **values) -> "NeuronModel":
        """A copy with some namespace values replaced (e.g. ``v_th=0.8``)."""
        ns = dict(self.namespace)
        unknown = set(values) - set(ns)
        if unknown:
            raise KeyError(f"model {self.name!r} has no parameter(s) {sorted(unknown)}; it has {sorted(ns)}")
        ns.update(values)
        return NeuronModel(self.name, self.equations, self.membrane, self.threshold, self.reset,
                           ns, self.unit, self.init, self.method)

    def key(self) -> str:
        """A stable text describing the model (part of compile-cache keys)."""
        ns = ",".join(f"{k}={self.namespace[k]!r}" for k in sorted(self.namespace))
        return "|".join([self.name, self.equations.strip(), self.membrane, self.threshold,
                         self.reset, ns, repr(self.unit), self.init, self.method])
