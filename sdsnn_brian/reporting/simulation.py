"""The final network of a run simulated on test images, without a ``Trainer``.

:func:`simulate` rebuilds the network from ``config.json``, encodes the first test images with the
evaluation encoding (``default_rng([seed, EVAL_SEED_OFFSET, 0])``, as :meth:`Trainer.evaluate
<sdsnn_brian.trainer.Trainer.evaluate>` draws its first minibatch), runs them through a
:class:`~sdsnn_brian.device.Simulator` with the checkpoint's masked weights and biases, and reads the
predictions through the run's loss.  The simulator is the one training built (same network, batch
size and device), so its compiled project comes from the cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import energy as _en
from ..rundir import EVAL_SEED_OFFSET

__all__ = ["Simulation", "simulate"]


@dataclass
class Simulation:
    """One simulated minibatch of test images with a run's final weights."""

    x: np.ndarray            # input spikes [T, B, n]
    rec: object              # Recording: .u, .s lists of [T, B, N]
    labels: np.ndarray
    predictions: np.ndarray
    dt: float                # seconds
    theta: list
    estimate: dict           # energy.energy_estimate over the simulated samples


def simulate(run, n_samples=None, cache_dir=None, data=None, device="cpp_standalone") -> Simulation:
    """Simulate test images with ``run``'s final weights (a :class:`~sdsnn_brian.reporting.run.Run`;
    :meth:`Run.simulate <sdsnn_brian.reporting.run.Run.simulate>` caches the result).

    ``data``: ``(images, labels)``; default the first MNIST test images.  ``n_samples``: default
    the run's batch size (at most 100), which reuses the project compiled for training.
    """
    from ..device import Simulator
    from ..encoding import get_encoder
    from ..losses import get_loss

    net = run.build_network()
    bs = int(run.config.get("batch_size") or 100)
    n = min(bs, 100) if n_samples is None else int(n_samples)
    if data is None:
        from ..data import MNIST

        if net.input.size != 784:
            raise ValueError("the network's input is not MNIST-sized: give the data to simulate")
        test = MNIST(train=False, limit=n)
        images, labels = test.images, test.labels
    else:
        images, labels = (np.asarray(a) for a in data)
    images, labels = images[:n].reshape(min(n, len(images)), -1), labels[:n]
    loss = get_loss(run.config.get("loss", "rate_mse"))
    seed = int(run.config.get("seed", 0))
    weights, masks, biases = run.weights, run.masks, run.biases
    x = get_encoder(net.input.encoding)(images, net.steps, np.random.default_rng([seed, EVAL_SEED_OFFSET, 0]))
    sim = Simulator(net, max(bs, len(images)), device, threads=int(run.config.get("threads") or 0),
                    cache_dir=cache_dir)
    try:
        rec = sim.run(x, [w * m for w, m in zip(weights, masks)], biases)
    finally:
        sim.close()
    res = loss(rec.u[-1], rec.s[-1], labels)
    return Simulation(x=x, rec=rec, labels=labels, predictions=np.argmax(res.scores, axis=1),
                      dt=float(net.dt), theta=[d.theta for d in net.dynamics()],
                      estimate=_en.energy_estimate(x, rec, masks, connections=net.connections))
