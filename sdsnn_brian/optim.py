"""Optimisers and learning-rate schedules over lists of numpy arrays.

The update rules are those of ``torch.optim`` (single-tensor code path), so a
run here follows the same trajectory as the same run in PyTorch::

    opt = Adam(lr=1e-3)
    sched = CosineLR(opt, T_max=epochs)
    for epoch in range(epochs):
        for batch in data:
            grads = ...                 # list of arrays, same shapes as params
            opt.step(params, grads)     # updates params in place
        sched.step()                    # once per epoch

State is keyed by position in ``params``: pass the same list, in the same
order, at every step.  ``state_dict()`` returns a flat dict of numpy arrays and
scalars (``np.savez(path, **opt.state_dict())`` works; so does
:func:`sdsnn_brian.checkpoint.save_checkpoint`), and ``load_state_dict``
accepts it back, including the 0-d arrays ``np.load`` returns.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "Optimizer",
    "Adam",
    "SGD",
    "LRScheduler",
    "StepLR",
    "CosineLR",
    "get_optimizer",
    "get_scheduler",
    "OPTIMIZERS",
]


def _scalar(v):
    """A Python scalar from a scalar or 0-d array (as np.load gives back)."""
    if isinstance(v, np.ndarray):
        if v.ndim != 0:
            raise ValueError(f"expected a scalar, got an array of shape {v.shape}")
        v = v.item()
    elif isinstance(v, np.generic):
        v = v.item()
    return v


def _check_nonneg(name, v):
    v = float(v)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {v}")
    return v


class Optimizer:
    """Base class: ``step(params, grads)`` updates ``params`` in place."""

    name = "optimizer"
    _hyper: tuple[str, ...] = ("lr",)
    _buffers: tuple[str, ...] = ()

    def __init__(self, lr: float):
        self.lr = _check_nonneg("lr", lr)
        self.step_count = 0
        self.state: dict[str, list[np.ndarray] | None] = {b: None for b in self._buffers}

    # -- helpers
    def _check(self, params, grads):
        params = list(params)
        grads = list(grads)
        if len(params) != len(grads):
            raise ValueError(f"{len(params)} params but {len(grads)} grads")
        for i, (p, g) in enumerate(zip(params, grads)):
            if not isinstance(p, np.ndarray):
                raise TypeError(f"param {i} must be a numpy array (updated in place), got {type(p).__name__}")
            if not np.issubdtype(p.dtype, np.floating):
                raise TypeError(f"param {i} must be a floating array, got dtype {p.dtype}")
            if np.shape(g) != p.shape:
                raise ValueError(f"grad {i} has shape {np.shape(g)}, param {i} has shape {p.shape}")
        for b in self._buffers:
            buf = self.state.get(b)
            if buf is None:
                continue
            if len(buf) != len(params) or any(s.shape != p.shape for s, p in zip(buf, params)):
                raise ValueError(
                    f"{self.name}: params differ from those the optimiser state was built for "
                    f"({len(buf)} arrays {[s.shape for s in buf]} vs {len(params)} arrays "
                    f"{[p.shape for p in params]})"
                )
        return params, [np.asarray(g) for g in grads]

    def _buffer(self, key, params, fill=None):
        if self.state.get(key) is None:
            if fill is None:
                self.state[key] = [np.zeros(p.shape, dtype=p.dtype) for p in params]
            else:
                self.state[key] = [np.array(f, dtype=p.dtype, copy=True) for f, p in zip(fill, params)]
        return self.state[key]

    def step(self, params, grads):  # pragma: no cover - interface
        raise NotImplementedError

    def zero_state(self):
        """Forget the moment buffers and the step count (hyper-parameters stay)."""
        self.step_count = 0
        self.state = {b: None for b in self._buffers}

    # -- records
    def config(self) -> dict:
        cfg = {"name": self.name}
        for h in self._hyper:
            v = getattr(self, h)
            cfg[h] = list(v) if isinstance(v, tuple) else v
        return cfg

    def state_dict(self) -> dict:
        d = {"name": self.name, "step": int(self.step_count)}
        for h in self._hyper:
            v = getattr(self, h)
            if isinstance(v, tuple):
                for i, vi in enumerate(v):
                    d[f"{h}.{i}"] = vi
            else:
                d[h] = v
        for b in self._buffers:
            buf = self.state.get(b)
            d[f"{b}.n"] = -1 if buf is None else len(buf)
            for i, a in enumerate(buf or ()):
                d[f"{b}.{i}"] = a.copy()
        return d

    def load_state_dict(self, state: dict):
        name = _scalar(state.get("name", self.name))
        if str(name) != self.name:
            raise ValueError(f"state dict is for optimiser {name!r}, not {self.name!r}")
        for h in self._hyper:
            cur = getattr(self, h)
            if isinstance(cur, tuple):
                setattr(self, h, tuple(type(c)(_scalar(state[f"{h}.{i}"])) for i, c in enumerate(cur)))
            else:
                setattr(self, h, type(cur)(_scalar(state[h])))
        self.step_count = int(_scalar(state["step"]))
        for b in self._buffers:
            n = int(_scalar(state[f"{b}.n"]))
            self.state[b] = None if n < 0 else [np.array(state[f"{b}.{i}"], copy=True) for i in range(n)]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Adam(Optimizer):
    """Adam (Kingma & Ba), exactly as ``torch.optim.Adam``.

    ``weight_decay`` adds ``weight_decay * param`` to the gradient (L2, not
    AdamW).  Bias correction: ``step = lr / (1 - beta1^t)``, ``denom =
    sqrt(v) / sqrt(1 - beta2^t) + eps``.
    """

    name = "adam"
    _hyper = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    _buffers = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(lr)
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        self.betas = (b1, b2)
        self.eps = _check_nonneg("eps", eps)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)
        self.amsgrad = bool(amsgrad)

    def step(self, params, grads):
        params, grads = self._check(params, grads)
        b1, b2 = self.betas
        m = self._buffer("exp_avg", params)
        v = self._buffer("exp_avg_sq", params)
        vmax = self._buffer("max_exp_avg_sq", params) if self.amsgrad else None
        self.step_count += 1
        t = self.step_count
        bc1 = 1.0 - b1**t
        bc2_sqrt = math.sqrt(1.0 - b2**t)
        step_size = self.lr / bc1
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g.astype(p.dtype, copy=False)
            if self.weight_decay != 0:
                g = g + self.weight_decay * p
            # the same operations in the same order as written out, in one scratch array
            buf = np.empty_like(p)
            # torch: exp_avg.lerp_(grad, 1 - beta1):  m += (g - m) * (1 - b1)
            np.subtract(g, m[i], out=buf)
            buf *= 1.0 - b1
            m[i] += buf
            # v = b2 v + ((1 - b2) g) g
            v[i] *= b2
            np.multiply(g, 1.0 - b2, out=buf)
            buf *= g
            v[i] += buf
            if vmax is not None:
                np.maximum(vmax[i], v[i], out=vmax[i])
            # p -= step_size * (m / (sqrt(v) / bc2_sqrt + eps))
            np.sqrt(v[i] if vmax is None else vmax[i], out=buf)
            buf /= bc2_sqrt
            buf += self.eps
            np.divide(m[i], buf, out=buf)
            buf *= step_size
            p -= buf


class SGD(Optimizer):
    """Stochastic gradient descent, exactly as ``torch.optim.SGD``.

    ``d = g + weight_decay * p``; with momentum ``buf = d`` at the first step,
    then ``buf = momentum * buf + (1 - dampening) * d``; ``d = d + momentum *
    buf`` (Nesterov) or ``d = buf``; ``p -= lr * d``.
    """

    name = "sgd"
    _hyper = ("lr", "momentum", "dampening", "nesterov", "weight_decay")
    _buffers = ("momentum_buffer",)

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
        super().__init__(lr)
        self.momentum = _check_nonneg("momentum", momentum)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0")

    def step(self, params, grads):
        params, grads = self._check(params, grads)
        self.step_count += 1
        if self.momentum != 0:
            first = self.state.get("momentum_buffer") is None
            bufs = self._buffer("momentum_buffer", params)
        for i, (p, g) in enumerate(zip(params, grads)):
            d = g.astype(p.dtype, copy=False)
            if self.weight_decay != 0:
                d = d + self.weight_decay * p
            if self.momentum != 0:
                buf = bufs[i]
                if first:
                    buf[...] = d
                else:
                    buf *= self.momentum
                    buf += (1.0 - self.dampening) * d
                d = d + self.momentum * buf if self.nesterov else buf
            p -= self.lr * d


OPTIMIZERS = {"adam": Adam, "sgd": SGD}


def get_optimizer(spec, **kwargs):
    """An optimiser from a name (``'adam'``, ``'sgd'``), a ``config()`` dict or an object.

    ``get_optimizer('sgd', lr=0.1, momentum=0.9)``; an object with a ``step``
    method is returned unchanged.  Unknown names raise :class:`ValueError`.
    """
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name is None:
            raise ValueError(f"optimiser config needs a 'name' (one of {sorted(OPTIMIZERS)}), got {spec}")
        spec.update(kwargs)
        if "betas" in spec:
            spec["betas"] = tuple(spec["betas"])
        return get_optimizer(name, **spec)
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key not in OPTIMIZERS:
            raise ValueError(f"unknown optimiser {spec!r}; known optimisers: {', '.join(sorted(OPTIMIZERS))}")
        if key == "sgd" and "lr" not in kwargs:
            raise ValueError("SGD needs a learning rate: get_optimizer('sgd', lr=...)")
        return OPTIMIZERS[key](**kwargs)
    if hasattr(spec, "step") and callable(spec.step):
        if kwargs:
            raise TypeError("keyword arguments are only accepted with an optimiser name")
        return spec
    raise ValueError(
        f"cannot make an optimiser from {spec!r}; pass one of {', '.join(sorted(OPTIMIZERS))}, "
        "a config dict or an optimiser object"
    )


# --------------------------------------------------------------------------- schedules


class LRScheduler:
    """Sets ``optimizer.lr`` from the epoch count; call :meth:`step` once per epoch.

    As in torch, construction counts as epoch 0 and sets ``lr`` to the base
    rate (the optimiser's ``lr`` at construction).
    """

    name = "scheduler"
    _hyper: tuple[str, ...] = ()

    def __init__(self, optimizer):
        if not hasattr(optimizer, "lr"):
            raise TypeError("the scheduler's optimizer must have an 'lr' attribute")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = -1
        self.step()

    def get_lr(self, epoch: int) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def step(self):
        self.last_epoch += 1
        self.optimizer.lr = float(self.get_lr(self.last_epoch))
        return self.optimizer.lr

    def get_last_lr(self) -> float:
        return self.optimizer.lr

    def config(self) -> dict:
        return {"name": self.name, **{h: getattr(self, h) for h in self._hyper}}

    def state_dict(self) -> dict:
        return {"name": self.name, "base_lr": self.base_lr, "last_epoch": self.last_epoch,
                **{h: getattr(self, h) for h in self._hyper}}

    def load_state_dict(self, state: dict):
        name = str(_scalar(state.get("name", self.name)))
        if name != self.name:
            raise ValueError(f"state dict is for scheduler {name!r}, not {self.name!r}")
        self.base_lr = float(_scalar(state["base_lr"]))
        self.last_epoch = int(_scalar(state["last_epoch"]))
        for h in self._hyper:
            setattr(self, h, type(getattr(self, h))(_scalar(state[h])))
        self.optimizer.lr = float(self.get_lr(self.last_epoch))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)`` (``torch.optim.lr_scheduler.StepLR``)."""

    name = "step"
    _hyper = ("step_size", "gamma")

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        if int(step_size) < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def get_lr(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR(LRScheduler):
    """Cosine annealing (``torch.optim.lr_scheduler.CosineAnnealingLR``, closed form).

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``;
    past ``T_max`` the cosine continues (rising again), as in torch.
    """

    name = "cosine"
    _hyper = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        if int(T_max) < 1:
            raise ValueError(f"T_max must be >= 1, got {T_max}")
        self.T_max = int(T_max)
        self.eta_min = float(eta_min)
        super().__init__(optimizer)

    def get_lr(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


SCHEDULERS = {"step": StepLR, "cosine": CosineLR}


def get_scheduler(spec, optimizer, **kwargs):
    """A schedule from a name (``'step'``, ``'cosine'``) or ``config()`` dict, bound to ``optimizer``.

    ``None`` or ``'none'`` gives ``None`` (constant rate).
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("none", "constant")):
        return None
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        spec.update(kwargs)
        return get_scheduler(name, optimizer, **spec)
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key not in SCHEDULERS:
            raise ValueError(f"unknown schedule {spec!r}; known schedules: {', '.join(sorted(SCHEDULERS))}")
        return SCHEDULERS[key](optimizer, **kwargs)
    if isinstance(spec, LRScheduler):
        return spec
    raise ValueError(f"cannot make a schedule from {spec!r}; known schedules: {', '.join(sorted(SCHEDULERS))}")
