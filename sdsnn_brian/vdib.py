r"""Time decoding through the variational directed information bottleneck (VDIB).

Skatchkovsky, Simeone & Jang, "Learning to Time-Decode in Spiking Neural Networks Through
the Information Bottleneck", NeurIPS 2021.  A hybrid variational autoencoder: the encoder
is a spiking network (deterministic LIF hidden layers, then a layer of stochastic readout
neurons declared with ``Dense(..., stochastic=True)`` and simulated by Brian2 like any
other network); the decoder is a small numpy network (:mod:`sdsnn_brian.decoders`) that
reads the readout raster over a window and outputs the target.

The model
---------
Readout neuron ``i`` at step ``t``: ``u_t = a u_{t-1} + W s_t + b`` (``s`` the spikes of the
layer below, no reset, no self-feedback: ``u`` is a deterministic function of the input),
``z_t ~ Bernoulli(sigmoid(u_t))``.  The noise is uniform, drawn here in numpy per sample,
step and readout (seeded) and passed to the simulation, which spikes when
``noise < sigmoid(u)``; so every device gives the same spikes and this side knows them.

The loss (to minimise), per sample::

    l = D(target, decoder(z window)) + beta * sum_{t,i} k_{t,i}
    k = z log(sigma(u)/r) + (1 - z) log((1 - sigma(u))/(1 - r))     (:func:`kl_sample`)

``D`` is the distortion (cross-entropy for labels, BCE for images); ``k`` is the one-sample
estimate of ``KL(Bernoulli(sigma(u)) || Bernoulli(r))`` (:func:`bernoulli_kl`), the bound on
the directed information from input to spikes that pulls the firing probability to ``r``.

Encoder gradients (``estimator``)
---------------------------------
``'score'`` (the paper): with ``p(z) = prod sigma^z (1 - sigma)^(1-z)``,
``d E[l] / d theta = E[(l + beta) sum_t (z_t - sigma_t) du_t/dtheta]`` exactly (the ``beta``
is the direct derivative of the KL sample, ``dk/du = z - sigma``).  For the readout
weights each parameter gets its own baseline ``b_w = E[e_w^2 l] / E[e_w^2]`` (moving
averages over minibatches, :class:`ParameterBaseline`; ``e_w`` is the parameter's
per-sample eligibility ``sum_t (z_t - sigma_t) trace_t``, ``trace`` the presynaptic spikes
filtered by the readout's leak ``a``), so the estimate is
``mean_b [(l_b - b_w) e_{b,w} + beta e_{b,w}]``.  The hidden layers get
``dL/du = (l_b - b + beta)(z - sigma) / B`` (``b`` a moving average of ``l``) and exact BPTT
through the surrogate (:func:`sdsnn_brian.gradient.backward`), in place of the authors'
random feedback matrices.

``'straight_through'`` (pathwise, not in the paper): ``dz/du := sigma'(u)``, so
``dL/du = dD/dz sigma' + beta [(z - sigma) + sigma' (u - logit r)]`` with ``dD/dz`` from the
decoder's backward; the same BPTT below.

``hidden='frozen'`` trains the readout (and the decoder) only.

Training (:class:`VDIBTrainer`) uses :class:`~sdsnn_brian.device.Simulator` for the
encoder's forward (one run per minibatch, samples in sequence, state reset per sample),
numpy for everything else, and :class:`~sdsnn_brian.optim.Adam` for both parts.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import sys
import time

import numpy as np

from .decoders import Decoder, Window, distortion, make_decoder
from .rundir import (CONFIG_FILE, EVAL_SEED_OFFSET, METRICS_FILE, PARAMS_FILE, SUMMARY_FILE, checkpoint_name,
                     vdib_bias_key, vdib_weight_key, write_json_atomic)

__all__ = ["sigmoid", "bernoulli_kl", "kl_sample", "readout_noise", "readout_eligibility", "ParameterBaseline",
           "score_function_gradient", "score_grad_u", "straight_through_grad_u", "VDIBTrainer", "ESTIMATORS"]

ESTIMATORS = ("score", "straight_through")


def check_prior(r) -> float:
    """The prior firing probability ``r`` as a float strictly inside (0, 1)."""
    if isinstance(r, bool) or not isinstance(r, numbers.Real) or not (0.0 < float(r) < 1.0):
        raise ValueError(f"the prior rate r must lie strictly between 0 and 1, got {r!r}")
    return float(r)


def _finite(a, what):
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return a


def sigmoid(u):
    u = np.asarray(u, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def _log_sigmoid(u):
    return -np.logaddexp(0.0, -u)


def bernoulli_kl(p, r):
    """``KL(Bernoulli(p) || Bernoulli(r))`` elementwise (closed form; ``0 log 0 = 0``)."""
    r = check_prior(r)
    p = _finite(p, "bernoulli_kl: p")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError("bernoulli_kl: p must lie in [0, 1]")
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * (np.log(p) - math.log(r)), 0.0)
        b = np.where(p < 1, (1 - p) * (np.log1p(-p) - math.log1p(-r)), 0.0)
    return a + b


def kl_sample(z, u, r):
    """The one-sample KL estimate ``z log(sigma(u)/r) + (1 - z) log((1 - sigma(u))/(1 - r))``.

    ``z`` 0/1 spikes and ``u`` membranes of the same shape; its expectation over
    ``z ~ Bernoulli(sigma(u))`` is :func:`bernoulli_kl` ``(sigma(u), r)``.
    """
    r = check_prior(r)
    u = _finite(u, "kl_sample: u")
    z = np.asarray(z, dtype=np.float64)
    if z.shape != u.shape:
        raise ValueError(f"kl_sample: z has shape {z.shape}, u has {u.shape}")
    return z * (_log_sigmoid(u) - math.log(r)) + (1 - z) * (_log_sigmoid(-u) - math.log1p(-r))


def readout_noise(rng, shape):
    """Uniform noise strictly inside (0, 1) for a stochastic readout (``noise < sigmoid(u)`` spikes)."""
    U = rng.random(shape)
    U[U == 0.0] = 2.0 ** -60
    return U


def readout_eligibility(pre, z, u, a=0.0, bias=True):
    """Per-sample eligibilities of the readout's parameters for the score function.

    ``pre`` [T, B, n] presynaptic spikes, ``z``/``u`` [T, B, N]; the readout is
    ``u_t = a u_{t-1} + W pre_t + b``, so ``du_t/dW_ij = trace_{t,j}`` with
    ``trace_t = a trace_{t-1} + pre_t``.  Returns ``(e_W [B, N, n], e_b [B, N] or None)``
    with ``e = sum_t (z_t - sigma(u_t)) trace_t`` (``d log p(z) / d theta``).
    """
    pre = np.asarray(pre, dtype=np.float64)
    delta = np.asarray(z, dtype=np.float64) - sigmoid(u)
    T = pre.shape[0]
    if a != 0.0:
        tr = np.empty_like(pre)
        tr[0] = pre[0]
        for t in range(1, T):
            tr[t] = a * tr[t - 1] + pre[t]
    else:
        tr = pre
    eW = np.matmul(delta.transpose(1, 2, 0), tr.transpose(1, 0, 2))  # [B, N, n]
    eb = None
    if bias:
        c = np.empty(T)
        c[0] = 1.0
        for t in range(1, T):
            c[t] = a * c[t - 1] + 1.0
        eb = np.einsum("tbn,t->bn", delta, c)
    return eW, eb


class ParameterBaseline:
    """Per-parameter baseline ``b = E[e^2 l] / E[e^2]`` as exponential moving averages.

    ``value()`` is the baseline from the minibatches seen so far (0 where nothing is known);
    ``update(e, l)`` folds in a minibatch: ``e`` [B, *shape] eligibilities, ``l`` [B] signals.
    """

    def __init__(self, shape, decay=0.9):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"baseline decay must lie in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.num = np.zeros(shape)
        self.den = np.zeros(shape)
        self.seen = False

    def value(self):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.den > 0, self.num / np.where(self.den > 0, self.den, 1.0), 0.0)

    def update(self, e, l):
        e2 = np.asarray(e) ** 2
        l = np.asarray(l, dtype=np.float64)
        num = np.tensordot(l, e2, axes=(0, 0)) / len(l)
        den = e2.mean(axis=0)
        k = self.decay if self.seen else 0.0
        self.num = k * self.num + (1 - k) * num
        self.den = k * self.den + (1 - k) * den
        self.seen = True


def score_function_gradient(pre, z, u, signal, a=0.0, beta=0.0, baselines=None, bias=True):
    """Score-function gradient of ``mean_b l_b`` for the readout's ``(W, b)``.

    ``signal`` [B] learning signals ``l_b`` (distortion + beta KL); ``baselines`` a pair of
    :class:`ParameterBaseline` (W, b) or None (no baseline).  Uses each baseline's value
    *before* this minibatch (so the estimate stays unbiased), then updates it; if a
    baseline has seen nothing yet it is first estimated from this minibatch.
    Returns ``(dW [N, n], db [N] or None)``.
    """
    l = _finite(signal, "learning signal")
    eW, eb = readout_eligibility(pre, z, u, a, bias)
    out = []
    for k, e in enumerate((eW, eb)):
        if e is None:
            out.append(None)
            continue
        if baselines is not None:
            bl = baselines[k]
            if not bl.seen:
                bl.update(e, l)
            b = bl.value()
            g = np.tensordot(l, e, axes=(0, 0)) - (e * b).sum(axis=0)
            bl.update(e, l)
        else:
            g = np.tensordot(l, e, axes=(0, 0))
        g = (g + beta * e.sum(axis=0)) / len(l)
        out.append(g)
    return out[0], out[1]


def score_grad_u(z, u, signal, baseline=0.0, beta=0.0):
    """``dL/du`` [T, B, N] of the score-function estimator (for BPTT into the hidden layers):
    ``(l_b - baseline + beta) (z - sigma(u)) / B``."""
    l = _finite(signal, "learning signal")
    delta = np.asarray(z, dtype=np.float64) - sigmoid(u)
    return (l - baseline + beta)[None, :, None] * delta / len(l)


def straight_through_grad_u(dz, z, u, beta, r):
    """Pathwise (straight-through) ``dL/du`` [T, B, N]: ``dz/du := sigma'(u)``.

    ``dz``: the decoder's gradient on the raster (already divided by the batch size);
    the KL sample contributes ``(z - sigma) + sigma' (u - logit r)`` per element, over ``B``.
    """
    r = check_prior(r)
    u = np.asarray(u, dtype=np.float64)
    sig = sigmoid(u)
    sp = sig * (1.0 - sig)
    B = u.shape[1]
    return np.asarray(dz) * sp + beta * ((np.asarray(z) - sig) + sp * (u - math.log(r / (1 - r)))) / B


# ---------------------------------------------------------------------------------------------
class VDIBTrainer:
    """Train a hybrid SNN encoder / numpy decoder with the VDIB loss.

    Parameters
    ----------
    net : Network
        Its last trained layer must be a stochastic readout (``Dense(..., stochastic=True)``).
    decoder : ``'mlp'``, ``'conv1d'``, ``'linear'`` or a :class:`~sdsnn_brian.decoders.Decoder`
    distortion : ``'ce'`` (labels) or ``'bce'`` (targets in [0, 1])
    n_out : int
        Decoder outputs (classes, pixels).
    window : Window
        ``Window('whole')`` or ``Window(tau)`` (sliding); ``rate=True`` for rate decoding.
    beta, r : KL weight and prior firing probability.
    estimator : ``'score'`` or ``'straight_through'``; hidden : ``'bptt'`` or ``'frozen'``.
    lr, dec_lr : Adam learning rates of the encoder and the decoder.
    decoder_options : dict for :func:`~sdsnn_brian.decoders.make_decoder` (``hidden``, ...).
    """

    def __init__(self, net, decoder="mlp", *, distortion="ce", n_out=10, window=None, beta=1e-3, r=0.3,
                 estimator="score", hidden="bptt", surrogate="rectangular", lr=1e-3, dec_lr=1e-3,
                 baseline_decay=0.9, batch_size=100, device="cpp_standalone", seed=0, cache_dir=None,
                 threads=0, decoder_options=None):
        from .device import Simulator
        from .optim import Adam
        from .surrogate import get_surrogate

        if not net.stochastic or not net.stochastic[-1] or any(net.stochastic[:-1]):
            raise ValueError("VDIBTrainer: the network's last trained layer (and only it) must be a stochastic "
                             "readout: Dense(n, neuron=models.stochastic_readout, bias=True, stochastic=True)")
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
        if hidden not in ("bptt", "frozen"):
            raise ValueError(f"hidden must be 'bptt' or 'frozen', got {hidden!r}")
        if distortion not in ("ce", "bce"):
            raise ValueError(f"unknown distortion {distortion!r}; known: ce, bce")
        beta = float(beta)
        if not math.isfinite(beta) or beta < 0:
            raise ValueError(f"beta must be finite and >= 0, got {beta!r}")
        self.net, self.beta, self.r = net, beta, check_prior(r)
        self.estimator, self.hidden, self.kind = estimator, hidden, distortion
        self.window = window if window is not None else Window("whole")
        self.surrogate = get_surrogate(surrogate)
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.dynamics = net.dynamics()
        self.a = float(self.dynamics[-1].a)
        T, N = net.steps, net.trained[-1].size
        L = self.window.length(T)
        if isinstance(decoder, Decoder):
            if decoder.in_shape != (L, N):
                raise ValueError(f"the decoder takes windows {decoder.in_shape}, this window gives {(L, N)}")
            self.decoder = decoder
        else:
            self.decoder = make_decoder(decoder, N, L, int(n_out), rng=np.random.default_rng([self.seed, 1]),
                                        **dict(decoder_options or {}))
        self.W, b = net.init_params(np.random.default_rng(self.seed))
        self.b = b
        if self.b[-1] is not None:  # start the readout near the prior rate: u ~ logit(r) at rest
            self.b[-1][:] = math.log(self.r / (1 - self.r)) * (1 - self.a)
        self.sim = Simulator(net, self.batch_size, device, threads=threads, cache_dir=cache_dir)
        self.enc_opt, self.dec_opt = Adam(lr), Adam(dec_lr)
        self.baselines = (ParameterBaseline(self.W[-1].shape, baseline_decay),
                          ParameterBaseline(self.W[-1].shape[:1], baseline_decay))
        self.signal_baseline = None
        self.baseline_decay = float(baseline_decay)
        self.history = []
        self.epoch = 0

    # -- parameters -----------------------------------------------------------------------
    def encoder_params(self):
        """The encoder's trained arrays (weights, then biases that exist), as the optimiser sees them."""
        n = len(self.W) if self.hidden == "bptt" else 1
        Ws = self.W[-n:]
        bs = [b for b in self.b[-n:] if b is not None]
        return Ws + bs

    def config(self) -> dict:
        return {"network": self.net.describe(), "decoder": self.decoder.config(),
                "decoder_params": self.decoder.n_params(), "window": self.window.config(),
                "distortion": self.kind, "beta": self.beta, "r": self.r, "estimator": self.estimator,
                "hidden": self.hidden, "surrogate": self.surrogate.config(), "lr": self.enc_opt.lr,
                "dec_lr": self.dec_opt.lr, "baseline_decay": self.baseline_decay, "batch_size": self.batch_size,
                "seed": self.seed, "device": self.sim.device}

    # -- data -------------------------------------------------------------------------------
    def _rows(self, targets, P):
        """Targets of a minibatch as decoder rows ordered [P, B]."""
        y = np.asarray(targets)
        B = y.shape[0]
        if self.kind == "ce":
            if y.ndim == 1:
                y = np.broadcast_to(y[None, :], (P, B))
            elif y.ndim == 2 and y.shape[1] == P:
                y = y.T
            else:
                raise ValueError(f"label targets must be [n] or [n, {P}] (one per window position), got {y.shape}")
            return np.ascontiguousarray(y).reshape(P * B).astype(np.int64)
        if y.ndim == 2:
            y = np.broadcast_to(y[None], (P,) + y.shape)
        elif y.ndim == 3 and y.shape[1] == P:
            y = y.transpose(1, 0, 2)
        else:
            raise ValueError(f"image targets must be [n, D] or [n, {P}, D], got {y.shape}")
        return np.ascontiguousarray(y, dtype=np.float64).reshape(P * B, -1)

    def _check_data(self, inputs, targets):
        inputs = np.asarray(inputs)
        targets = np.asarray(targets)
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        if len(inputs) == 0:
            raise ValueError("no data")
        if np.issubdtype(inputs.dtype, np.floating) and not np.all(np.isfinite(inputs)):
            raise ValueError("inputs contain NaN or infinite values")
        if np.issubdtype(targets.dtype, np.floating) and not np.all(np.isfinite(targets)):
            raise ValueError("targets contain NaN or infinite values")
        self._rows(targets[:1], self.window.positions(self.net.steps))  # shape check
        return inputs, targets

    def _encode(self, inputs, rng):
        from .encoding import get_encoder

        return get_encoder(self.net.input.encoding)(inputs, self.net.steps, rng)

    # -- one minibatch ------------------------------------------------------------------------
    def forward(self, inputs, targets, rng):
        """Encoder (Brian2) and decoder forward on one minibatch; returns a dict of arrays."""
        T = self.net.steps
        x = self._encode(inputs, rng)
        B = x.shape[1]
        N = self.net.trained[-1].size
        U = readout_noise(rng, (T, B, N))
        rec = self.sim.run(x, self.W, self.b, noise=U)
        z = rec.s[-1].astype(np.float64)
        u = rec.u[-1]
        win = self.window(z)  # [P, B, L, N]
        P = win.shape[0]
        logits = self.decoder.forward(win.reshape((P * B,) + win.shape[2:]))
        y = self._rows(targets, P)
        d_row, g_row = distortion(self.kind, logits, y)
        D = d_row.reshape(P, B).sum(axis=0)
        kl = kl_sample(z, u, self.r).sum(axis=(0, 2))
        return dict(x=x, rec=rec, z=z, u=u, win=win, logits=logits, y=y, d_row=d_row, g_row=g_row, D=D, KL=kl,
                    signal=D + self.beta * kl, timings=rec.timings)

    def train_step(self, inputs, targets, rng) -> dict:
        """One minibatch: forward, gradients, Adam updates.  Returns its metrics."""
        from .gradient import backward

        t0 = time.perf_counter()
        f = self.forward(inputs, targets, rng)
        t1 = time.perf_counter()
        B, T = f["z"].shape[1], self.net.steps
        dwin = self.decoder.backward(f["g_row"] / B)
        dec_grads = self.decoder.grads()
        l = f["signal"]
        if self.estimator == "straight_through":
            dz = self.window.backward(dwin.reshape(f["win"].shape), T)
            gu = straight_through_grad_u(dz, f["z"], f["u"], self.beta, self.r)
        else:
            if self.signal_baseline is None:
                self.signal_baseline = float(l.mean())
            gu = score_grad_u(f["z"], f["u"], l, self.signal_baseline, self.beta)
            k = self.baseline_decay
            self.signal_baseline = k * self.signal_baseline + (1 - k) * float(l.mean())
        rec = f["rec"]
        if self.hidden == "bptt" and len(self.W) > 1:
            res = backward(self.dynamics, f["x"], rec.u, rec.s, self.W, None, gu, self.surrogate)
        else:
            pre = f["x"] if len(self.W) == 1 else rec.s[-2]
            res = [None] * (len(self.W) - 1) + backward([self.dynamics[-1]], pre, rec.u[-1:], rec.s[-1:],
                                                        self.W[-1:], None, gu, self.surrogate)
        if self.estimator == "score":  # the readout: per-parameter baselines
            pre = f["x"] if len(self.W) == 1 else rec.s[-2]
            dW, db = score_function_gradient(pre, f["z"], f["u"], l, self.a, self.beta, self.baselines,
                                             bias=self.b[-1] is not None)
            res[-1] = (dW, db)
        n = len(self.W) if self.hidden == "bptt" else 1
        grads = [r[0] for r in res[-n:]] + [r[1] for r, b in zip(res[-n:], self.b[-n:]) if b is not None]
        for g in grads + dec_grads:
            if not np.all(np.isfinite(g)):
                raise FloatingPointError("a NaN or infinite gradient: training stops before the update")
        self.enc_opt.step(self.encoder_params(), grads)
        self.dec_opt.step(self.decoder.params(), dec_grads)
        t2 = time.perf_counter()
        m = {"loss": float(l.mean()), "distortion": float(f["D"].mean()), "kl": float(f["KL"].mean()),
             "rate": float(f["z"].mean()), "forward_s": t1 - t0, "backward_s": t2 - t1}
        if self.kind == "ce":
            m["accuracy"] = float((f["logits"].argmax(axis=1) == f["y"]).mean())
        return m

    # -- checkpoints --------------------------------------------------------------------------
    def param_arrays(self) -> dict:
        """The trained arrays by name: encoder weights ``W{k}``, biases ``b{k}``, decoder ``dec.{i}``."""
        arrays = {vdib_weight_key(k): w for k, w in enumerate(self.W)}
        arrays.update({vdib_bias_key(k): b for k, b in enumerate(self.b) if b is not None})
        arrays.update(self.decoder.state())
        return arrays

    def state_dict(self):
        """``(arrays, meta)``: everything a resumed run needs -- encoder and decoder parameters,
        both optimisers' moments, the score-function baselines, the epoch and the history."""
        arrays = self.param_arrays()
        for prefix, opt in (("enc_optim/", self.enc_opt), ("dec_optim/", self.dec_opt)):
            for key, v in opt.state_dict().items():
                arrays[prefix + key] = np.asarray(v)
        for name, bl in zip(("baseline_w", "baseline_b"), self.baselines):
            arrays[f"{name}.num"], arrays[f"{name}.den"] = bl.num, bl.den
        meta = {"epoch": self.epoch, "history": self.history, "signal_baseline": self.signal_baseline,
                "baselines_seen": [bl.seen for bl in self.baselines], "config": self.config()}
        return arrays, meta

    def load_state_dict(self, arrays, meta):
        """Restore :meth:`state_dict`'s output (shapes are checked against this trainer's)."""
        def put(dst, key):
            src = np.asarray(arrays[key])
            if src.shape != dst.shape:
                raise ValueError(f"checkpoint entry {key} has shape {src.shape}, this trainer has {dst.shape}")
            dst[...] = src

        for k, w in enumerate(self.W):
            put(w, vdib_weight_key(k))
        for k, b in enumerate(self.b):
            if b is not None:
                put(b, vdib_bias_key(k))
        self.decoder.load_state(arrays)
        for prefix, opt in (("enc_optim/", self.enc_opt), ("dec_optim/", self.dec_opt)):
            opt.load_state_dict({k[len(prefix):]: (v.item() if np.ndim(v) == 0 else v)
                                 for k, v in arrays.items() if k.startswith(prefix)})
        for name, bl, seen in zip(("baseline_w", "baseline_b"), self.baselines, meta["baselines_seen"]):
            bl.num, bl.den, bl.seen = np.array(arrays[f"{name}.num"]), np.array(arrays[f"{name}.den"]), bool(seen)
        self.signal_baseline = meta["signal_baseline"]
        self.epoch = int(meta["epoch"])
        self.history = list(meta["history"])

    # -- loops ------------------------------------------------------------------------------
    def fit(self, inputs, targets, epochs=1, validation=None, run_dir=None, protocol=None, log_every=10,
            stream=None, resume=False, overwrite=False):
        """Train (see :meth:`_fit`); a ``run_dir`` holding a run is refused unless ``resume`` or
        ``overwrite``, and is locked while training (:mod:`sdsnn_brian.rundir`)."""
        from .rundir import open_run_directory

        if resume and not run_dir:
            raise ValueError("resume=True needs the run_dir to resume from")
        lock = open_run_directory(run_dir, resume=resume, overwrite=overwrite) if run_dir else None
        try:
            return self._fit(inputs, targets, epochs, validation, run_dir, protocol, log_every, stream, resume)
        finally:
            if lock is not None:
                lock.release()

    def _fit(self, inputs, targets, epochs=1, validation=None, run_dir=None, protocol=None, log_every=10,
             stream=None, resume=False):
        """Train for ``epochs`` over ``inputs``/``targets``; evaluate ``validation`` (a pair) after each epoch.

        Randomness: the shuffle of epoch ``e`` from ``default_rng([seed, e])``, the encoding and
        readout noise of minibatch ``k`` from ``default_rng([seed, e, k])``.  With ``run_dir``,
        writes ``config.json``, ``metrics.jsonl`` (one line per epoch), an atomic checkpoint
        ``ckpt-EEEE.npz`` after every epoch (the newest two are kept), ``params.npz`` and
        ``summary.json``.  ``epochs`` counts from the start of the run: with ``resume=True`` the
        newest valid checkpoint of ``run_dir`` is loaded first and training continues from its
        epoch, giving the same result as an uninterrupted run.  Returns the history.
        """
        from .checkpoint import latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint

        stream = stream or sys.stdout
        inputs, targets = self._check_data(inputs, targets)
        if validation is not None:
            validation = self._check_data(*validation)
        if run_dir:
            os.makedirs(run_dir, exist_ok=True)
            cfg = self.config()
            cfg["protocol"] = protocol or " ".join(sys.argv)
            write_json_atomic(os.path.join(run_dir, CONFIG_FILE), cfg)
        if resume:
            if not run_dir:
                raise ValueError("resume=True needs the run_dir to resume from")
            path = latest_checkpoint(run_dir)
            if path is not None:
                self.load_state_dict(*load_checkpoint(path))
                print(f"resumed from {path} (epoch {self.epoch})", file=stream, flush=True)
        t_start = time.perf_counter()
        n = len(inputs)
        for e in range(self.epoch, int(epochs)):
            t0 = time.perf_counter()
            order = np.random.default_rng([self.seed, e]).permutation(n)
            sums, nb = {}, 0
            n_batches = -(-n // self.batch_size)
            for k in range(n_batches):
                idx = order[k * self.batch_size:(k + 1) * self.batch_size]
                m = self.train_step(inputs[idx], targets[idx], np.random.default_rng([self.seed, e, k]))
                for key, v in m.items():
                    sums[key] = sums.get(key, 0.0) + v
                nb += 1
                if log_every and (k + 1) % log_every == 0:
                    print(f"epoch {e + 1} batch {k + 1}/{n_batches}: loss {m['loss']:.4g} distortion "
                          f"{m['distortion']:.4g} rate {m['rate']:.3f}" +
                          (f" acc {m['accuracy']:.3f}" if "accuracy" in m else ""), file=stream, flush=True)
            rec = {"epoch": e + 1, **{f"train_{k}": v / nb for k, v in sums.items()},
                   "epoch_seconds": time.perf_counter() - t0}
            if validation is not None:
                t1 = time.perf_counter()
                rec.update({f"val_{k}": v for k, v in self.evaluate(*validation).items()})
                rec["eval_seconds"] = time.perf_counter() - t1
            self.history.append(rec)
            self.epoch = e + 1
            print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in rec.items()}),
                  file=stream, flush=True)
            if run_dir:
                write_json_atomic(os.path.join(run_dir, METRICS_FILE), self.history, lines=True)
                save_checkpoint(os.path.join(run_dir, checkpoint_name(self.epoch)), *self.state_dict())
                prune_checkpoints(run_dir, keep=2)
        if run_dir:
            save_checkpoint(os.path.join(run_dir, PARAMS_FILE), self.param_arrays(), {"epoch": self.epoch})
            write_json_atomic(os.path.join(run_dir, SUMMARY_FILE),
                              {"final": self.history[-1] if self.history else {}, "config": self.config(),
                               "wall_seconds": time.perf_counter() - t_start,
                               "protocol": protocol or " ".join(sys.argv)})
        return self.history

    def evaluate(self, inputs, targets) -> dict:
        """Mean distortion, KL sample, loss, readout rate and firing probability over a data set
        (one noise sample per input, from ``default_rng([seed, EVAL_SEED_OFFSET, k])``); ``accuracy``
        for labels, per-output ``bce`` and ``mse`` for images."""
        inputs, targets = self._check_data(inputs, targets)
        tot = {}
        n = len(inputs)
        for k in range(-(-n // self.batch_size)):
            sl = slice(k * self.batch_size, (k + 1) * self.batch_size)
            f = self.forward(inputs[sl], targets[sl], np.random.default_rng([self.seed, EVAL_SEED_OFFSET, k]))
            B = f["z"].shape[1]
            part = {"distortion": f["D"].sum(), "kl": f["KL"].sum(), "loss": f["signal"].sum(),
                    "rate": f["z"].mean(axis=(0, 2)).sum(), "p_fire": sigmoid(f["u"]).mean(axis=(0, 2)).sum()}
            rows = len(f["y"]) // B
            if self.kind == "ce":
                part["accuracy"] = (f["logits"].argmax(axis=1) == f["y"]).mean() * B
            else:
                D = f["logits"].shape[1]
                part["bce"] = f["d_row"].sum() / (rows * D)
                part["mse"] = ((sigmoid(f["logits"]) - f["y"]) ** 2).mean(axis=1).sum() / rows
            for key, v in part.items():
                tot[key] = tot.get(key, 0.0) + float(v)
        return {key: v / n for key, v in tot.items()}
