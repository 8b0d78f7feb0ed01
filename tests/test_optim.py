"""Optimisers and schedules follow torch.optim step for step."""

import io

import numpy as np
import pytest

from sdsnn_brian.optim import SGD, Adam, CosineLR, StepLR, get_optimizer, get_scheduler

torch = pytest.importorskip("torch")

STEPS = 20
SHAPES = [(3, 4), (5,), ()]


def init_params(seed=0):
    g = np.random.default_rng(seed)
    return [g.normal(size=s) for s in SHAPES]


def grad_fn(params, t, seed=1):
    """A gradient that depends on the parameters (so trajectories feed back) plus noise."""
    g = np.random.default_rng(seed + 1000 * t)
    return [np.sin(3 * p) + 0.5 * p**3 + g.normal(size=p.shape) for p in params]


def make_torch(name, kw, tparams):
    if name == "adam":
        return torch.optim.Adam(tparams, **kw)
    return torch.optim.SGD(tparams, **kw)


def ours(name, kw):
    kw = dict(kw)
    return Adam(**kw) if name == "adam" else SGD(**kw)


def run_pair(name, kw, steps=STEPS, sched=None, steps_per_epoch=1):
    params = init_params()
    tparams = [torch.tensor(p.copy(), dtype=torch.float64, requires_grad=True) for p in params]
    topt = make_torch(name, kw, tparams)
    opt = ours(name, kw)
    tsched = s = None
    if sched is not None:
        kind, skw = sched
        tcls = {"step": torch.optim.lr_scheduler.StepLR, "cosine": torch.optim.lr_scheduler.CosineAnnealingLR}[kind]
        tsched = tcls(topt, **skw)
        s = get_scheduler(kind, opt, **skw)
    lrs = []
    for t in range(steps):
        g = grad_fn(params, t)
        opt.step(params, g)
        tg = grad_fn([p.detach().numpy() for p in tparams], t)
        for p, gi in zip(tparams, tg):
            p.grad = torch.tensor(gi, dtype=torch.float64)
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-11, atol=1e-13, err_msg=f"step {t}")
        if s is not None and (t + 1) % steps_per_epoch == 0:
            s.step()
            tsched.step()
            assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
            lrs.append(opt.lr)
    return params, opt, lrs


CASES = [
    ("adam", dict(lr=1e-2)),
    ("adam", dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adam", dict(lr=1e-2, amsgrad=True)),
    ("sgd", dict(lr=0.05)),
    ("sgd", dict(lr=0.05, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd", dict(lr=0.05, momentum=0.8, weight_decay=0.05)),
    ("sgd", dict(lr=0.05, momentum=0.5, dampening=0.3)),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_trajectory_equals_torch(name, kw):
    run_pair(name, kw)


def test_steplr_equals_torch():
    _, opt, lrs = run_pair("sgd", dict(lr=0.1, momentum=0.9), sched=("step", dict(step_size=3, gamma=0.5)))
    assert lrs[1] == 0.1 and lrs[2] == pytest.approx(0.05)


def test_cosinelr_equals_torch():
    # 2 steps per epoch, T_max 6: 10 epochs go past T_max, where the cosine rises again
    _, opt, lrs = run_pair("adam", dict(lr=0.02), sched=("cosine", dict(T_max=6, eta_min=1e-3)), steps_per_epoch=2)
    assert lrs[5] == pytest.approx(1e-3)


def test_state_dict_roundtrip_continues_identically():
    for name, kw in CASES:
        params = init_params()
        opt = ours(name, kw)
        sched = CosineLR(opt, T_max=7, eta_min=0.001)
        for t in range(8):
            opt.step(params, grad_fn(params, t))
            sched.step()
        # save through np.savez, as a checkpoint would
        buf = io.BytesIO()
        np.savez(buf, **{f"opt.{k}": v for k, v in opt.state_dict().items()},
                 **{f"sched.{k}": v for k, v in sched.state_dict().items()})
        buf.seek(0)
        z = np.load(buf, allow_pickle=False)
        ostate = {k[4:]: z[k] for k in z.files if k.startswith("opt.")}
        sstate = {k[6:]: z[k] for k in z.files if k.startswith("sched.")}
        params2 = [p.copy() for p in params]
        opt2 = get_optimizer(name, **{**kw, "lr": 123.0})
        sched2 = CosineLR(opt2, T_max=1)
        opt2.load_state_dict(ostate)
        sched2.load_state_dict(sstate)
        assert opt2.lr == opt.lr and sched2.last_epoch == sched.last_epoch and sched2.T_max == 7
        for t in range(8, 16):
            opt.step(params, grad_fn(params, t))
            opt2.step(params2, grad_fn(params2, t))
            sched.step()
            sched2.step()
            for a, b in zip(params, params2):
                np.testing.assert_array_equal(a, b)


def test_float32_params_stay_float32_in_place():
    p = np.ones((2, 2), dtype=np.float32)
    ref = p
    opt = Adam(lr=0.1)
    opt.step([p], [np.ones((2, 2))])
    assert p is ref and p.dtype == np.float32 and np.all(p < 1)
    assert opt.state["exp_avg"][0].dtype == np.float32


def test_errors_and_registry():
    with pytest.raises(ValueError, match="unknown optimiser.*adam, sgd"):
        get_optimizer("rmsprop")
    assert isinstance(get_optimizer("adam", lr=0.1), Adam)
    assert isinstance(get_optimizer({"name": "sgd", "lr": 0.1, "momentum": 0.9}), SGD)
    cfg = Adam(lr=0.01, betas=(0.5, 0.6)).config()
    assert get_optimizer(cfg).betas == (0.5, 0.6)
    o = SGD(lr=0.1)
    assert get_optimizer(o) is o
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="shape"):
        Adam().step([np.zeros(3)], [np.zeros(4)])
    opt = Adam()
    opt.step([np.zeros(3)], [np.ones(3)])
    with pytest.raises(ValueError, match="params differ"):
        opt.step([np.zeros(4)], [np.ones(4)])
    with pytest.raises(ValueError, match="not 'sgd'"):
        SGD(lr=0.1).load_state_dict(Adam().state_dict())
    with pytest.raises(ValueError, match="unknown schedule"):
        get_scheduler("exp", Adam())
    assert get_scheduler(None, Adam()) is None
    s = StepLR(SGD(lr=1.0), step_size=2)
    assert s.optimizer.lr == 1.0
