"""Property-based tests (hypothesis) of the SD-SNN structural functions.

Invariants, checked over random layers, weights, weight trajectories and configs:

* masks only ever hold 0/1;
* the pruned set never shrinks, pruned units are never selected again and keep a
  zero bias; with ``regrow_pruned_units=False`` their incoming rows stay empty;
* ``r- <= 0 <= r+`` for every synapse whenever the layer's initial maximum weight is
  positive (initialisation, expansion and contraction all preserve it);
* after a step past ``T_s`` every weight of a constrained layer lies in its range
  (for layers whose initial maximum is positive; otherwise the reference's ranges
  are empty or inverted, see ``spines``);
* removed synapses (mask 0) have weight 0 after a step;
* ``rho`` stays in ``[0, rho_max]``; a pruning step prunes exactly up to the target;
* replaying the event log onto the initial mask reproduces the current mask.
"""
import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sdsnn_brian.structure import (
    REMOVED, RESTORED, LayerSpec, SDSNNConfig, StructureSchedule, constrain, init_spines, prune_step,
    prune_target, update_persistence, update_spines,
)

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

floats = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False, width=64)


def _arrays(shape):
    return hnp.arrays(np.float64, shape, elements=floats)


# ------------------------------------------------------------------ pure functions
@SETTINGS
@given(data=st.data(), n=st.integers(1, 6), k=st.integers(1, 6), T_s=st.integers(1, 3),
       steps=st.integers(1, 12), transitions=st.booleans())
def test_spine_ranges_keep_sign_and_constraint_lands_inside(data, n, k, T_s, steps, transitions):
    w0 = data.draw(_arrays((n, k)))
    s = init_spines(w0)
    positive = w0.max() > 0
    for _ in range(steps):
        w = data.draw(_arrays((n, k)))
        s, _ = update_spines(s, w, T_s, 0.75, transitions)
        if positive:
            assert np.all(s.r_neg <= 0) and np.all(s.r_pos >= 0)
            c = constrain(w, s)
            assert np.all(c <= s.r_pos) and np.all(c >= s.r_neg)
            # clipping leaves in-range weights alone
            inside = (w <= s.r_pos) & (w >= s.r_neg)
            np.testing.assert_array_equal(c[inside], w[inside])
        assert np.all(s.c_pos < T_s) and np.all(s.c_neg < T_s) and np.all(s.c_zero < T_s)


@SETTINGS
@given(data=st.data(), n=st.integers(1, 8), k=st.integers(1, 5),
       rhos=st.lists(st.floats(0.0, 0.99), min_size=1, max_size=6))
def test_prune_step_monotone_and_exact(data, n, k, rhos):
    r_pos = data.draw(_arrays((n, k)))
    r_neg = -np.abs(data.draw(_arrays((n, k))))
    mask = data.draw(hnp.arrays(np.int8, (n, k), elements=st.integers(0, 1)))
    pruned = np.zeros(n, bool)
    for rho in rhos:
        new_pruned, new = prune_step(r_pos, r_neg, mask, pruned, rho)
        assert np.all(new_pruned[pruned])                       # never un-prunes
        assert not np.any(pruned[new])                          # only living units are newly chosen
        assert new_pruned.sum() == max(pruned.sum(), prune_target(n, rho))
        assert new_pruned.sum() <= n - 1
        pruned = new_pruned
        mask = mask.copy()
        mask[pruned] = 0


@SETTINGS
@given(cands=st.lists(hnp.arrays(bool, (5,)), min_size=1, max_size=25), G=st.integers(0, 4),
       transitions=st.booleans())
def test_persistence_restores_only_persistent_candidates(cands, G, transitions):
    count, prev = np.zeros(5), np.zeros(5, bool)
    run = np.zeros(5, int)        # current run length of consecutive candidate steps
    since = np.zeros(5, int)      # candidate steps in the run since the last restoration
    for c in cands:
        count, restore = update_persistence(count, c, G, prev, transitions)
        run = np.where(c, run + 1, 0)
        since = np.where(c, since + 1, 0)
        assert np.all(count >= 0) and np.all(count <= G)
        assert not np.any(restore & ~c)
        need = G + 2 if transitions else G + 1
        assert np.all(since[restore] >= need)
        # after a restoration the run goes on; with transitions the restoring step is
        # the "previous" candidate step of the next count, so G + 1 more suffice
        since[restore] = 1 if transitions else 0
        prev = c


# ------------------------------------------------------------------ the schedule
@st.composite
def schedule_cases(draw):
    kind = draw(st.sampled_from(["fc", "conv"]))
    if kind == "fc":
        n_in, h, n_out = draw(st.integers(2, 7)), draw(st.integers(2, 6)), draw(st.integers(1, 3))
        specs = [LayerSpec("h", (h, n_in), "fc", prunable=True, regenerates=True),
                 LayerSpec("out", (n_out, h), "fc")]
    else:
        c1, c2, n_out = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 3))
        h = draw(st.integers(2, 4))
        specs = [LayerSpec("c1", (c1, 1, 3, 3), "conv", prunable=False, regenerates=False, constrained=True),
                 LayerSpec("c2", (c2, c1, 3, 3), "conv", prunable=True, regenerates=True),
                 LayerSpec("f1", (h, c2 * 4), "fc", prunable=True, regenerates=True),
                 LayerSpec("out", (n_out, h), "fc")]
    cfg = SDSNNConfig(
        T_s=draw(st.integers(1, 3)), G_fc=draw(st.integers(0, 3)), G_conv=draw(st.integers(0, 3)),
        rho0_fc=draw(st.floats(0.0, 0.9)), rho0_conv=draw(st.floats(0.0, 0.9)),
        mode=draw(st.sampled_from(["reference", "strict"])),
        strict_restore=draw(st.sampled_from(["current", "virtual"])),
        count_transitions=draw(st.booleans()), regrow_pruned_units=draw(st.booleans()),
        conv_spine_updates=draw(st.booleans()),
    )
    cfg = dataclasses.replace(cfg, decay_centre=float(cfg.structure_after + 1),
                              fc_decay_end=float(cfg.structure_after + 4), p0_fc=draw(st.floats(0, 99)))
    w0 = [draw(_arrays(s.shape)) for s in specs]
    sparse_start = draw(st.booleans())
    m0 = [draw(hnp.arrays(np.float64, s.shape, elements=st.sampled_from([0.0, 1.0]))) if sparse_start
          else np.ones(s.shape) for s in specs]
    steps = draw(st.integers(1, 3 * cfg.T_s + 6))
    scale = draw(st.sampled_from([0.0, 0.05, 0.5]))
    seed = draw(st.integers(0, 2 ** 16))
    return specs, cfg, w0, m0, steps, scale, seed


@SETTINGS
@given(case=schedule_cases())
def test_schedule_invariants(case):
    specs, cfg, w0, m0, steps, scale, seed = case
    rng = np.random.default_rng(seed)
    W = [w.copy() for w in w0]
    M = [m.copy() for m in m0]
    B = [rng.uniform(0.1, 1.0, s.n_units) for s in specs]
    sch = StructureSchedule(specs, cfg)
    initial_masks = [m.copy() for m in M]
    prev_pruned = [None if p is None else p.copy() for p in sch.pruned]
    init_max = [None] * len(specs)
    for t in range(steps):
        G = []
        for w, m in zip(W, M):
            d = rng.normal(0.0, scale, w.shape)
            w += d if cfg.mode == "reference" else d * (m != 0)
            G.append(rng.normal(0.0, 0.3, w.shape))
        sch.step(W, M, B, grad_score=G if cfg.mode == "strict" else None)
        if t == 0:
            init_max = [float((w * (m != 0)).max()) for w, m in zip(W, M)]
        for i, spec in enumerate(specs):
            m, w = M[i], W[i]
            assert np.all((m == 0) | (m == 1))                          # masks hold 0/1
            assert np.all(w[m == 0] == 0)                               # removed synapses carry 0
            sp = sch.spines[i]
            if sp is not None and init_max[i] > 0:
                assert np.all(sp.r_neg <= 0) and np.all(sp.r_pos >= 0)
            if sp is not None and spec.is_constrained and t > cfg.constraint_after and init_max[i] > 0:
                assert np.all(w <= sp.r_pos) and np.all(w >= sp.r_neg)  # inside the ranges
            p = sch.pruned[i]
            if p is not None:
                assert np.all(p[prev_pruned[i]])                        # pruned units never return
                assert np.all(B[i][p] == 0)                             # ... and stay silent
                if not cfg.regrow_pruned_units:
                    assert not np.any(m[p] != 0)
                assert p.sum() <= spec.n_units - cfg.min_alive
                assert 0.0 <= sch.rho[i] <= cfg.rho_max
                prev_pruned[i] = p.copy()
    # the event log replays the mask history
    ev = sch.log.events()
    for i in range(len(specs)):
        replay = (initial_masks[i] != 0).ravel().copy()
        sel = ev["layer"] == i
        for idx, kind in zip(ev["index"][sel], ev["kind"][sel]):
            assert replay[idx] == (kind == REMOVED)
            replay[idx] = kind == RESTORED
        np.testing.assert_array_equal(replay, (M[i] != 0).ravel())
