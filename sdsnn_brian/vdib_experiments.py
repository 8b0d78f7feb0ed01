"""The VDIB protocols' shared pieces: the encoder, one training run, the summary and the report.

``protocols/vdib_mnist.py`` and ``protocols/vdib_predictive.py`` call these and nothing else.
"""
from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

from .decoders import Window
from .network import Dense, Input, Network
from .rundir import RESULTS_FILE, RESULTS_REPORT_FILE, write_atomic, write_json_atomic
from .vdib import VDIBTrainer

__all__ = ["vdib_encoder", "train_and_test", "mean_std", "summarise", "write_results", "markdown_table"]


def vdib_encoder(n_in=784, hidden=(256,), readouts=128, steps=20, encoding="rate", init_gain=6.0,
                 readout_neuron=None, name="vdib_encoder") -> Network:
    """``n_in`` inputs -> deterministic SD-SNN LIF hidden layers -> ``readouts`` stochastic readouts.

    ``init_gain`` scales the readout's initial weights (``Dense.init_gain``): larger values make
    the readout depend on its input from the start (6 gives membranes of about unit spread).
    """
    from .models import stochastic_readout

    layers = [Input(n_in, encoding=encoding)] + [Dense(int(h)) for h in hidden]
    layers.append(Dense(int(readouts), neuron=readout_neuron or stochastic_readout, bias=True, stochastic=True,
                        init_gain=float(init_gain)))
    return Network(*layers, steps=int(steps), name=name)


def train_and_test(net, train, test, *, task, decoding="time", seed=0, epochs=1, run_dir=None, protocol=None,
                   decoder="mlp", decoder_options=None, tau="whole", log_every=0, resume=False,
                   overwrite=False, **trainer_kwargs) -> dict:
    """Train one VDIB system and test it; returns a JSON-able record.

    ``train``/``test``: pairs ``(inputs, targets)``; ``task``: ``'classify'`` (labels, 'ce'),
    ``'reconstruct'`` (targets in [0, 1], 'bce') or ``'predict'`` (labels per window position);
    ``decoding``: ``'time'`` or ``'rate'`` (the same decoder fed the spike counts only);
    ``resume``: continue an interrupted run from the newest checkpoint in ``run_dir``; ``overwrite``:
    replace a run already in ``run_dir`` (without either, such a directory is refused).
    """
    if task not in ("classify", "reconstruct", "predict"):
        raise ValueError(f"unknown task {task!r}; known: classify, reconstruct, predict")
    if decoding not in ("time", "rate"):
        raise ValueError(f"decoding must be 'time' or 'rate', got {decoding!r}")
    kind = "bce" if task == "reconstruct" else "ce"
    n_out = int(trainer_kwargs.pop("n_out", None) or (np.asarray(train[1]).shape[-1] if kind == "bce" else 10))
    tr = VDIBTrainer(net, decoder, distortion=kind, n_out=n_out, window=Window(tau, rate=decoding == "rate"),
                     seed=seed, decoder_options=decoder_options, **trainer_kwargs)
    t0 = time.perf_counter()
    tr.fit(train[0], train[1], epochs=epochs, run_dir=run_dir, protocol=protocol, log_every=log_every,
           resume=resume and run_dir is not None, overwrite=overwrite)
    t1 = time.perf_counter()
    res = tr.evaluate(test[0], test[1])
    t2 = time.perf_counter()
    out = {"task": task, "decoding": decoding, "seed": seed, "epochs": epochs, "beta": tr.beta, "r": tr.r,
           "estimator": tr.estimator, "decoder_params": tr.decoder.n_params(), "train_seconds": t1 - t0,
           "test_seconds": t2 - t1, "build_seconds": tr.sim.build_seconds,
           "train_last_epoch": tr.history[-1] if tr.history else {}, "test": res, "run_dir": run_dir}
    if run_dir:
        from .callbacks import write_json_atomic

        write_json_atomic(os.path.join(run_dir, "test.json"), out)
    return out


def mean_std(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v)),
            "values": [float(x) for x in v]}


def summarise(runs, metric_of) -> dict:
    """Group run records by (task, decoding) -> mean/std of ``metric_of[task]`` and of the readout rate."""
    groups = {}
    for r in runs:
        groups.setdefault((r["task"], r["decoding"]), []).append(r)
    out = {}
    for (task, dec), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        m = metric_of[task]
        out[f"{task}/{dec}"] = {"metric": m, "seeds": [r["seed"] for r in rs],
                                m: mean_std([r["test"][m] for r in rs]),
                                "rate": mean_std([r["test"]["rate"] for r in rs]),
                                "distortion": mean_std([r["test"]["distortion"] for r in rs]),
                                "train_seconds": mean_std([r["train_seconds"] for r in rs])}
    return out


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(run_dir, results: dict, report: str):
    """``results.json`` and ``report.md`` in ``run_dir`` (atomic)."""
    os.makedirs(run_dir, exist_ok=True)
    results = dict(results)
    results.setdefault("machine", {"python": platform.python_version(), "node": platform.node(),
                                   "cpus": os.cpu_count()})
    write_json_atomic(os.path.join(run_dir, RESULTS_FILE), results)
    write_atomic(os.path.join(run_dir, RESULTS_REPORT_FILE), report)
    return os.path.join(run_dir, RESULTS_REPORT_FILE)


def fmt(ms, scale=1.0, digits=2) -> str:
    """``mean ± std`` of a :func:`mean_std` record."""
    return f"{ms['mean'] * scale:.{digits}f} ± {ms['std'] * scale:.{digits}f}"


def dumps(obj) -> str:
    return json.dumps(obj, indent=1)
