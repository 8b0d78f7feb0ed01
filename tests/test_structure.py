"""Hand-made cases with exact expected outcomes for the SD-SNN structural mechanisms."""
import io
import json
import math

import numpy as np
import pytest

from sdsnn_brian.structure import (
    REMOVED, RESTORED, LayerSpec, SDSNNConfig, StructureLog, StructureSchedule, constrain, fc_layer_specs,
    init_spines, minmax_normalise, neuron_importance, prune_step, prune_target, regeneration_candidates,
    regeneration_percentile, removed_slots, restore_slots, slot_scores, update_conv_rate, update_fc_rate,
    update_persistence, update_spines, virtual_weights,
)
from sdsnn_brian.structure.rates import conv_rate_coefficient, fc_rate_coefficient


# ----------------------------------------------------------------------------- spines
def _run_spines(state, ws, T_s, **kw):
    for w in ws:
        state, _ = update_spines(state, np.asarray(w, dtype=float), T_s, **kw)
    return state


def test_init_spines_uses_signed_layer_max():
    w = np.array([[0.2, -0.9], [0.7, 0.1]])
    s = init_spines(w)
    assert np.all(s.r_pos == 0.7) and np.all(s.r_neg == -0.7)
    np.testing.assert_array_equal(s.prev_abs, np.abs(w))
    assert not s.c_pos.any() and not s.c_neg.any() and not s.c_zero.any()


def test_expansion_up_after_T_s_consecutive_steps_by_mean_excess():
    s = init_spines(np.array([1.0, 0.5]))           # r+ = 1, r- = -1
    s = _run_spines(s, [[1.2, 0.5], [1.4, 0.5]], 3)
    assert s.r_pos[0] == 1.0 and s.c_pos[0] == 2 and s.d_pos[0] == pytest.approx(0.6)
    s, info = update_spines(s, np.array([1.6, 0.5]), 3)
    assert s.r_pos[0] == pytest.approx(1.0 + (0.2 + 0.4 + 0.6) / 3)
    assert s.r_pos[1] == 1.0 and info.expanded_pos == 1
    assert s.c_pos[0] == 0 and s.d_pos[0] == 0  # restarts


def test_break_in_run_resets_count_and_excess():
    s = init_spines(np.array([1.0]))
    s = _run_spines(s, [[1.2], [1.2], [0.5], [1.2], [1.2]], 3)
    assert s.r_pos[0] == 1.0 and s.c_pos[0] == 2 and s.d_pos[0] == pytest.approx(0.4)
    s = _run_spines(s, [[1.5]], 3)
    assert s.r_pos[0] == pytest.approx(1.0 + (0.2 + 0.2 + 0.5) / 3)


def test_expansion_down_symmetric():
    s = init_spines(np.array([1.0, 0.0]))           # r- = -1
    s = _run_spines(s, [[1.0, -1.1], [1.0, -1.3]], 2)
    assert s.r_neg[1] == pytest.approx(-1.0 + (-0.1 - 0.3) / 2)
    assert s.r_neg[0] == -1.0


def test_contraction_multiplies_range_by_075():
    s = init_spines(np.array([1.0, 0.5]))
    s = _run_spines(s, [[1.0, 0.45], [1.0, 0.4]], 3)
    assert s.r_pos[1] == 1.0 and s.c_zero[1] == 2
    s, info = update_spines(s, np.array([1.0, -0.35]), 3)  # |w| still decreasing
    assert s.r_pos[1] == pytest.approx(0.75) and s.r_neg[1] == pytest.approx(-0.75)
    assert s.r_pos[0] == 1.0 and info.contracted == 1 and s.c_zero[1] == 0


def test_contraction_broken_by_an_increase():
    s = init_spines(np.array([1.0, 0.5]))
    s = _run_spines(s, [[1.0, 0.45], [1.0, 0.46], [1.0, 0.4], [1.0, 0.3]], 3)
    assert s.r_pos[1] == 1.0 and s.c_zero[1] == 2


def test_count_transitions_reference_quirk_needs_T_s_plus_one_steps():
    s = init_spines(np.array([1.0]))
    s = _run_spines(s, [[1.2], [1.4], [1.6]], 3, count_transitions=True)
    assert s.r_pos[0] == 1.0 and s.c_pos[0] == 2            # the first step did not count
    s = _run_spines(s, [[1.8]], 3, count_transitions=True)
    assert s.r_pos[0] == pytest.approx(1.0 + (0.4 + 0.6 + 0.8) / 3)


def test_constrain_clips_into_each_range():
    s = init_spines(np.array([1.0, 0.2, -0.3]))
    s.r_pos[2] = 0.5
    out = constrain(np.array([2.0, -3.0, 0.7]), s)
    np.testing.assert_array_equal(out, [1.0, -1.0, 0.5])


# ----------------------------------------------------------------------------- pruning
def test_minmax_normalise_and_flat_case():
    np.testing.assert_allclose(minmax_normalise(np.array([1.0, 3.0, 2.0])), [0, 1, 0.5])
    np.testing.assert_array_equal(minmax_normalise(np.full((2, 2), 4.0)), np.full((2, 2), 0.5))


def test_neuron_importance_by_hand():
    r_pos = np.array([[1.0, 2.0], [3.0, 1.0]])
    r_neg = -np.array([[1.0, 0.0], [1.0, 1.0]])
    mask = np.array([[1, 1], [0, 1]])
    # r+ + |r-| = [[2, 2], [4, 2]] -> norm [[0, 0], [1, 0]]
    np.testing.assert_allclose(neuron_importance(r_pos, r_neg, mask), [0.0, 0.0])
    mask = np.ones((2, 2))
    np.testing.assert_allclose(neuron_importance(r_pos, r_neg, mask), [0.0, 1.0])
    # all equal -> 0.5 per present synapse
    np.testing.assert_allclose(neuron_importance(np.ones((3, 4)), -np.ones((3, 4)),
                                                 np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]])),
                               [2.0, 0.5, 0.0])


def test_prune_target_floor_with_tolerance_and_cap():
    assert prune_target(10, 0.35) == 3
    assert prune_target(100, 0.29) == 29
    assert prune_target(5, 0.99) == 4          # at least one unit survives
    assert prune_target(5, 0.0) == 0


def test_pruning_removes_floor_n_rho_least_important_rows_and_never_unprunes():
    n, k = 5, 4
    r_pos = np.tile(np.array([[3.0], [1.0], [5.0], [2.0], [4.0]]), (1, k))  # importance order 1,3,0,4,2
    r_neg = np.zeros((n, k))
    mask = np.ones((n, k))
    pruned = np.zeros(n, bool)
    pruned, new = prune_step(r_pos, r_neg, mask, pruned, 0.4)
    np.testing.assert_array_equal(new, [1, 3])
    np.testing.assert_array_equal(pruned, [False, True, False, True, False])
    mask[pruned] = 0
    pruned, new = prune_step(r_pos, r_neg, mask, pruned, 0.6)   # total 3: one more
    np.testing.assert_array_equal(new, [0])
    mask[pruned] = 0
    pruned2, new = prune_step(r_pos, r_neg, mask, pruned, 0.2)  # lower rate: nothing returns
    assert new.size == 0
    np.testing.assert_array_equal(pruned2, pruned)


# ----------------------------------------------------------------------------- regeneration / rates
def test_regeneration_percentile_formula():
    assert regeneration_percentile(37, 60, 36) == pytest.approx(61.0)
    assert regeneration_percentile(38, 60, 36) == pytest.approx(61.1)
    assert regeneration_percentile(47, 65, 36) == pytest.approx(65 + 1.1 ** 10)
    assert regeneration_percentile(200, 60, 36) == 99.0
    assert regeneration_percentile(10 ** 6, 60, 36) == 99.0


def test_candidate_restored_only_after_more_than_G_consecutive_steps():
    G = 10
    count = np.zeros(3)
    cand = np.array([True, True, False])
    for _ in range(G):  # G consecutive candidate steps: not yet
        count, restore = update_persistence(count, cand, G)
        assert not restore.any()
    assert count[0] == G
    count, restore = update_persistence(count, cand, G)   # the (G+1)-th: restored
    np.testing.assert_array_equal(restore, [True, True, False])
    assert count[0] == 0


def test_persistence_break_resets():
    count = np.zeros(1)
    for c in [True] * 5 + [False] + [True] * 10:
        count, restore = update_persistence(count, np.array([c]), 10)
        assert not restore.any()
    count, restore = update_persistence(count, np.array([True]), 10)
    assert restore[0]


def test_persistence_transition_quirk_needs_G_plus_two():
    G, count, prev = 2, np.zeros(1), np.zeros(1, bool)
    out = []
    for _ in range(4):
        cand = np.array([True])
        count, restore = update_persistence(count, cand, G, prev, count_transitions=True)
        prev = cand
        out.append(bool(restore[0]))
    assert out == [False, False, False, True]


def test_candidates_are_removed_unpruned_and_above_percentile():
    w = np.arange(16, dtype=float).reshape(4, 4)          # 0..15; 61st percentile = 9.15
    mask = np.ones((4, 4))
    mask[0, 1] = mask[3, 3] = mask[2, 2] = mask[1, 3] = 0   # weights 1, 15, 10, 7
    pruned = np.array([False, False, False, True])
    cand, thr = regeneration_candidates(slot_scores(w, "fc"), removed_slots(mask, "fc"), pruned, 61)
    assert thr == pytest.approx(np.percentile(np.arange(16), 61))
    assert set(zip(*np.nonzero(cand))) == {(2, 2)}        # (3,3) belongs to a pruned unit


def test_conv_regeneration_scores_signed_kernel_sum_and_restores_whole_kernels():
    w = np.zeros((2, 3, 3, 3))
    w[0, 1] = 1.0           # sum 9
    w[1, 2, 0, 0] = 5.0     # sum 5
    w[1, 0] = -1.0          # sum -9
    mask = np.ones_like(w)
    mask[0, 1] = 0
    mask[1, 0] = 0
    mask[1, 2, 1, 1] = 0    # partially masked kernel: not a removed slot
    sc = slot_scores(w, "conv")
    assert sc.shape == (2, 3) and sc[0, 1] == 9 and sc[1, 0] == -9
    rem = removed_slots(mask, "conv")
    np.testing.assert_array_equal(rem, [[False, True, False], [True, False, False]])
    cand, _ = regeneration_candidates(sc, rem, np.zeros(2, bool), 65)
    np.testing.assert_array_equal(cand, [[False, True, False], [False, False, False]])
    restore_slots(mask, cand, "conv")
    assert np.all(mask[0, 1] == 1) and np.all(mask[1, 0] == 0)


def test_virtual_weights_strict_mode():
    w = np.array([[0.3, 0.0]])
    m = np.array([[1, 0]])
    g = np.array([[9.0, 0.2]])
    np.testing.assert_array_equal(virtual_weights(w, m, g), [[0.3, 0.2]])


def test_fc_rate_formula():
    assert update_fc_rate(0.35, 37, 300, 105, 10) == pytest.approx(0.35 + 0.01 * 195 / 10)
    assert update_fc_rate(0.5, 39, 300, 150, 10) == pytest.approx(0.5 + 0.01 * math.exp(-2) * 15)
    assert fc_rate_coefficient(60) == pytest.approx(math.exp(-23))
    assert fc_rate_coefficient(61) == 0.00075
    assert update_fc_rate(0.5, 70, 300, 150, 10) == pytest.approx(0.5 + 0.01 * 0.00075 * 15)
    assert update_fc_rate(0.98, 37, 300, 0, 10) == 0.99        # capped at rho_max


def test_conv_rate_formula():
    want = 0.05 + 0.01 * math.exp(-(42 - 37) / 5) * (40 - 2) / (300 - 100)
    assert update_conv_rate(0.05, 42, 40, 2, 300, 100) == pytest.approx(want)
    assert conv_rate_coefficient(37) == 1.0
    assert update_conv_rate(0.05, 42, 40, 2, 300, 300) == 0.05   # no living target


# ----------------------------------------------------------------------------- config
def test_config_defaults_are_reference_values():
    c = SDSNNConfig()
    assert (c.T_s, c.constraint_after, c.structure_after, c.p0_fc, c.p0_conv, c.p_growth, c.p_max) == \
        (18, 18, 36, 60, 65, 1.1, 99)
    assert (c.G_fc, c.G_conv, c.contraction, c.rho0_fc, c.rho0_conv) == (10, 18, 0.75, 0.35, 0.05)
    assert (c.decay_centre, c.fc_decay_end, c.late_rate, c.conv_decay_scale, c.n_out, c.mode) == \
        (37, 60, 0.00075, 5, 10, "reference")


def test_config_compressed():
    c = SDSNNConfig()
    assert c.compressed(1) == c
    k = c.compressed(6)
    assert (k.T_s, k.structure_after, k.constraint_after, k.G_fc, k.G_conv) == (3, 6, 3, 2, 3)
    assert k.decay_centre == 7 and k.fc_decay_end == pytest.approx(7 + 23 / 6)
    assert k.p_growth == pytest.approx(1.1 ** 6) and k.late_rate == pytest.approx(0.0045)
    assert k.compression == 6 and k.fc_decay_scale == 1 and k.conv_decay_scale == 5
    assert regeneration_percentile(7, k.p0_fc, k.structure_after, k.p_growth) == pytest.approx(61.0)


@pytest.mark.parametrize("kw", [dict(T_s=0), dict(mode="dense"), dict(rho0_fc=1.0), dict(rho_max=1.0),
                                dict(p0_fc=120), dict(T_s=2.5), dict(contraction=0), dict(n_out=0),
                                dict(late_rate=float("nan"))])
def test_config_rejects_bad_values(kw):
    with pytest.raises(ValueError):
        SDSNNConfig(**kw)


# ----------------------------------------------------------------------------- schedule
def _fc_setup(sizes=(6, 4, 2), seed=0):
    rng = np.random.default_rng(seed)
    specs = fc_layer_specs(list(sizes))
    W = [rng.uniform(-0.5, 0.5, s.shape) for s in specs]
    M = [np.ones(s.shape) for s in specs]
    B = [rng.uniform(0.1, 0.2, s.n_units) for s in specs]
    return specs, W, M, B


def test_schedule_timeline_constraint_then_structure():
    cfg = SDSNNConfig(T_s=2)
    specs, W, M, B = _fc_setup()
    sch = StructureSchedule(specs, cfg)
    sch.step(W, M, B)                                  # t=0: init
    rmax = sch.spines[0].r_pos[0, 0]
    for t in (1, 2):
        W[0][0, 0] = 10.0
        st = sch.step(W, M, B)
        assert W[0][0, 0] == 10.0 and st["fc0"]["clipped"] == 0      # t <= T_s: no constraint
    # two steps above r+ (T_s = 2) widened r+ by the mean excess: to 10 exactly
    assert sch.spines[0].r_pos[0, 0] == pytest.approx(10.0) and rmax < 10
    W[0][0, 0] = 20.0
    st = sch.step(W, M, B)                             # t=3 > T_s: clipped into the widened range
    assert W[0][0, 0] == pytest.approx(10.0) and st["fc0"]["clipped"] >= 1
    assert st["fc0"]["neurons_pruned"] == 0 and math.isnan(st["fc0"]["regen_percentile"])
    st = sch.step(W, M, B)                             # t=4 = 2*T_s: still no pruning
    assert st["fc0"]["neurons_pruned"] == 0
    st = sch.step(W, M, B)                             # t=5: first structural step
    assert st["fc0"]["neurons_pruned"] == math.floor(4 * 0.35) == 1
    assert st["fc0"]["regen_percentile"] == pytest.approx(61.0)
    p = np.flatnonzero(sch.pruned[0])
    assert np.all(M[0][p] == 0) and np.all(W[0][p] == 0) and np.all(B[0][p] == 0)
    assert st["fc1"]["neurons_pruned"] == 0 and np.all(M[1] == 1)     # output never pruned
    assert st["fc0"]["rho"] == pytest.approx(0.35 + 0.01 * math.exp(-(5 - 37)) * 3 / 10) or \
        st["fc0"]["rho"] == cfg.rho_max


def _event_setup():
    # hidden 4x4 (rows 0, 1 half removed; synapse (2,3) removed with a large trained weight), output 2x4
    specs = fc_layer_specs([4, 4, 2])
    W = [np.array([[0.1, 0.2, 0.0, 0.0],
                   [0.0, 0.0, 0.3, 0.1],
                   [0.2, 0.3, 0.4, 0.0],
                   [0.1, 0.2, 0.3, 0.5]]), np.full((2, 4), 0.1)]
    M = [np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]], float), np.ones((2, 4))]
    B = [np.full(4, 0.1), np.zeros(2)]
    cfg = SDSNNConfig(T_s=1, G_fc=1, rho0_fc=0.5, decay_centre=3.0, fc_decay_end=10.0)
    return specs, W, M, B, cfg


def test_event_log_records_removal_and_restoration_steps():
    specs, W, M, B, cfg = _event_setup()
    sch = StructureSchedule(specs, cfg)
    for t in range(6):
        W[0][2, 3] = 5.0        # dense training keeps pushing the removed synapse up (reference mode)
        st = sch.step(W, M, B)
        if t == 3:
            assert st["fc0"]["newly_pruned"] == 2 and st["fc0"]["removed"] == 4
            assert st["fc0"]["candidates"] == 1 and st["fc0"]["restored"] == 0
        if t == 4:
            assert st["fc0"]["restored"] == 1
            assert M[0][2, 3] == 1 and W[0][2, 3] == pytest.approx(0.5)  # restored with its (clipped) value
    np.testing.assert_array_equal(sch.pruned[0], [True, True, False, False])
    log = sch.log
    for flat in (0, 1, 6, 7):                                        # present synapses of rows 0, 1
        assert log.history(0, flat) == [(3, REMOVED)]
    assert log.history(0, 2 * 4 + 3) == [(4, RESTORED)]
    assert log.n_events(REMOVED) == 4 and log.n_events(RESTORED) == 1
    np.testing.assert_array_equal(log.steps_of(0, RESTORED), [4])
    # removed fraction both ways: output columns 0, 1 lost their source
    rep = sch.removed_fractions(M)
    assert rep["fc0"]["removed_masked"] == 8 and rep["fc0"]["neurons_pruned"] == 2
    assert rep["fc1"]["removed_masked"] == 0 and rep["fc1"]["removed_with_dead_sources"] == 4
    assert rep["all"]["synapses"] == 24 and rep["all"]["removed_with_dead_sources"] == 12
    assert sch.neurons_pruned() == {"fc0": 2, "fc1": 0}


@pytest.mark.parametrize("regrow", [True, False])
def test_regrowth_into_pruned_units_switch(regrow):
    import dataclasses
    specs, W, M, B, cfg = _event_setup()
    cfg = dataclasses.replace(cfg, regrow_pruned_units=regrow)
    sch = StructureSchedule(specs, cfg)
    for t in range(8):
        W[0][0, 2] = W[0][1, 0] = 5.0   # removed synapses of the rows pruned at t=3, pushed up
        st = sch.step(W, M, B)
        if t == 4:
            assert st["fc0"]["restored"] == (2 if regrow else 0)
    np.testing.assert_array_equal(sch.pruned[0], [True, True, False, False])   # stay pruned either way
    assert np.all(B[0][:2] == 0) and np.all(B[0][2:] == 0.1)
    if regrow:   # the reference: a pruned unit can regain synapses (it then transmits again)
        assert M[0][0, 2] == 1 and M[0][1, 0] == 1 and M[0][0].sum() == 1 and M[0][1].sum() == 1
        assert sch.log.history(0, 2) == [(4, RESTORED)]
        assert st["fc0"]["neurons_dead"] == 0
        assert sch.removed_fractions(M)["fc1"]["removed_with_dead_sources"] == 0
    else:        # rows of pruned units stay empty forever
        assert np.all(M[0][:2] == 0) and np.all(W[0][:2] == 0)
        assert st["fc0"]["neurons_dead"] == 2 and sch.log.n_events(RESTORED) == 0


def test_zero_pruned_biases_switch():
    import dataclasses
    specs, W, M, B, cfg = _event_setup()
    sch = StructureSchedule(specs, dataclasses.replace(cfg, zero_pruned_biases=False))
    for t in range(5):
        sch.step(W, M, B)
    assert sch.pruned[0].sum() == 2 and np.all(B[0] == 0.1)


def test_log_serialisation_roundtrip(tmp_path):
    specs, W, M, B, cfg = _event_setup()
    sch = StructureSchedule(specs, cfg)
    for t in range(6):
        W[0][2, 3] = 5.0
        sch.step(W, M, B)
    d = sch.log.to_dict()
    buf = io.BytesIO()
    np.savez(buf, **d)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        back = StructureLog.from_dict({k: z[k] for k in z.files})
    assert back.equals(sch.log) and back.layer_names == ["fc0", "fc1"]
    p = tmp_path / "stats.jsonl"
    sch.log.write_stats_jsonl(p)
    lines = p.read_text().splitlines()
    assert len(lines) == 12 and json.loads(lines[0])["layer_name"] == "fc0"
    recs = StructureLog.read_stats_jsonl(p)
    assert recs[7]["restored"] == 0 and recs[8]["restored"] == 1
    assert math.isnan(recs[1]["rho"]) and recs[0]["rho"] == 0.5


def _trainer_step(t, specs, W, M, mode, rng_seed=123):
    """Deterministic stand-in for an epoch of training: noise seeded by the step, plus a
    fixed upward drift on a fixed fifth of the synapses (so some removed ones regrow)."""
    rng = np.random.default_rng([rng_seed, t])
    G = []
    for i, (w, m) in enumerate(zip(W, M)):
        drift = 0.25 * (np.random.default_rng([rng_seed, 10 ** 6 + i]).uniform(size=w.shape) < 0.2)
        d = rng.normal(0.0, 0.08, w.shape) + drift
        if mode == "reference":
            w += d                        # dense: removed synapses move too
        else:
            w += d * (m != 0)             # strict: removed synapses frozen at 0
        G.append(d)
    return G


def _conv_specs():
    return [LayerSpec("conv1", (3, 1, 3, 3), "conv", prunable=False, regenerates=False),
            LayerSpec("conv2", (4, 3, 3, 3), "conv", prunable=True, regenerates=True),
            LayerSpec("fc1", (6, 4 * 2 * 2), "fc", prunable=True, regenerates=True),
            LayerSpec("fc2", (3, 6), "fc")]


@pytest.mark.parametrize("mode", ["reference", "strict"])
@pytest.mark.parametrize("net", ["fc", "conv"])
def test_state_dict_roundtrip_continues_identically(mode, net, tmp_path):
    cfg = SDSNNConfig(mode=mode, rho0_conv=0.3).compressed(6)
    specs = fc_layer_specs([10, 8, 3]) if net == "fc" else _conv_specs()
    rng = np.random.default_rng(7)
    W0 = [rng.normal(0, 0.3, s.shape) for s in specs]
    B0 = [rng.normal(0, 0.1, s.n_units) for s in specs]
    n_total, n_first = 24, 10

    def run(sch, W, M, B, t0, t1):
        for t in range(t0, t1):
            G = _trainer_step(t, specs, W, M, mode)
            sch.step(W, M, B, grad_score=G if mode == "strict" else None)

    W1, M1, B1 = [w.copy() for w in W0], [np.ones(s.shape) for s in specs], [b.copy() for b in B0]
    full = StructureSchedule(specs, cfg)
    run(full, W1, M1, B1, 0, n_total)

    W2, M2, B2 = [w.copy() for w in W0], [np.ones(s.shape) for s in specs], [b.copy() for b in B0]
    part = StructureSchedule(specs, cfg)
    run(part, W2, M2, B2, 0, n_first)
    path = tmp_path / "ckpt.npz"
    np.savez(path, **part.state_dict())
    with np.load(path, allow_pickle=False) as z:
        state = {k: z[k] for k in z.files}
    resumed = StructureSchedule(specs, cfg)
    resumed.load_state_dict(state)
    assert resumed.t == n_first
    run(resumed, W2, M2, B2, n_first, n_total)

    for a, b in zip(W1 + M1 + B1, W2 + M2 + B2):
        np.testing.assert_array_equal(a, b)
    assert resumed.log.equals(full.log)
    for i in range(len(specs)):
        assert (full.spines[i] is None) == (resumed.spines[i] is None)
        if full.spines[i] is not None:
            assert full.spines[i].equals(resumed.spines[i])
    assert full.rho == pytest.approx(resumed.rho, nan_ok=True)
    # the run did something structural: pruning and regeneration
    assert sum(full.neurons_pruned().values()) > 0
    assert full.log.n_events(REMOVED) > 0 and full.log.n_events(RESTORED) > 0


def test_load_state_dict_rejects_other_config():
    specs = fc_layer_specs([5, 4, 2])
    a = StructureSchedule(specs, SDSNNConfig(T_s=2))
    with pytest.raises(ValueError):
        StructureSchedule(specs, SDSNNConfig(T_s=3)).load_state_dict(a.state_dict())


def test_step_validates_before_modifying():
    specs, W, M, B = _fc_setup()
    sch = StructureSchedule(specs, SDSNNConfig(T_s=1))
    W[1][0, 0] = np.nan
    w0 = W[0].copy()
    with pytest.raises(FloatingPointError):
        sch.step(W, M, B)
    assert sch.t == 0 and np.array_equal(W[0], w0)
    W[1][0, 0] = 0.0
    M[0][0, 0] = 0.5
    with pytest.raises(ValueError):
        sch.step(W, M, B)
    M[0][0, 0] = 1
    with pytest.raises(ValueError):
        sch.step(W[:1], M, B)
    strict = StructureSchedule(specs, SDSNNConfig(T_s=1, mode="strict"))
    for _ in range(3):
        strict.step(W, M, B)
    with pytest.raises(ValueError, match="grad_score"):
        strict.step(W, M, B)


def test_conv_schedule_prunes_filters_and_uses_conv_rate():
    cfg = SDSNNConfig(rho0_conv=0.3).compressed(6)
    specs = _conv_specs()
    rng = np.random.default_rng(3)
    W = [rng.normal(0, 0.3, s.shape) for s in specs]
    M = [np.ones(s.shape) for s in specs]
    sch = StructureSchedule(specs, cfg)
    for t in range(cfg.structure_after + 2):
        _trainer_step(t, specs, W, M, "reference")
        st = sch.step(W, M)
    assert sch.pruned[1].sum() >= 1 and sch.pruned[0] is None
    p = np.flatnonzero(sch.pruned[1])
    assert np.all(M[1][p] == 0) and np.all(W[1][p] == 0)
    assert np.all(M[0] == 1)                               # conv1 never pruned
    rep = sch.removed_fractions(M)
    # fc1 columns of a pruned conv2 filter (2*2 each) count as dead sources
    dead = sch.pruned[1] & ~M[1].reshape(4, -1).any(axis=1)
    assert dead.sum() >= 1
    want = ((M[2] == 0) | ~np.repeat(~dead, 4)[None, :]).sum()
    assert rep["fc1"]["removed_with_dead_sources"] == want > rep["fc1"]["removed_masked"]
    assert st["conv2"]["rho"] > 0.3


def test_freeze_after_stops_every_mask_change():
    """With freeze_after the masks and pruned units never change from that step on."""
    import numpy as np

    from sdsnn_brian.structure import SDSNNConfig, StructureSchedule, fc_layer_specs

    rng = np.random.default_rng(0)
    cfg = SDSNNConfig().compressed(6)
    frozen = dataclasses_replace(cfg, freeze_after=9)
    runs = {}
    for name, c in (("free", cfg), ("frozen", frozen)):
        sched = StructureSchedule(fc_layer_specs([20, 16, 4]), c)
        W = [rng.normal(size=(16, 20)), rng.normal(size=(4, 16))]
        M = [np.ones_like(w) for w in W]
        history = []
        for t in range(40):
            for w in W:
                w += 0.05 * np.random.default_rng(t).normal(size=w.shape)
            sched.step(W, M)
            history.append((M[0].copy(), int(sched.pruned[0].sum())))
        runs[name] = history
    frozen_hist = runs["frozen"]
    for mask, pruned in frozen_hist[9:]:
        np.testing.assert_array_equal(mask, frozen_hist[8][0])
        assert pruned == frozen_hist[8][1]
    assert frozen_hist[8][1] > 0  # pruning had happened before the freeze
    free_hist = runs["free"]
    assert any(not np.array_equal(m, free_hist[8][0]) for m, _ in free_hist[9:])  # unfrozen keeps changing


def dataclasses_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)
