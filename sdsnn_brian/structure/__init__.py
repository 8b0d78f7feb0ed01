"""SD-SNN structural development: spine constraint, neuronal pruning, synaptic
regeneration and the neurotrophic pruning rate, as pure numpy functions (one module
per mechanism) composed by :class:`StructureSchedule`.

The method: Han et al., "Adaptive Sparse Structure Development with Pruning and
Regeneration for Spiking Neural Networks" (arXiv 2211.12219); every constant, with the
reference code's values as defaults, is a field of :class:`SDSNNConfig` (its docstring
and :mod:`~sdsnn_brian.structure.schedule` say what each does).  Each module's docstring
states the decisions taken where the paper or the reference code is ambiguous.
:mod:`~sdsnn_brian.structure.timeline` fits the timeline (counted in structural steps)
to a run of a given length.
"""
from .events import INT_STAT_FIELDS, REMOVED, RESTORED, STAT_FIELDS, StructureLog
from .pruning import (apply_unit_pruning, minmax_normalise, neuron_importance, prune_step, prune_target,
                      select_units_to_prune)
from .rates import (clip_rate, conv_rate_coefficient, fc_rate_coefficient, regeneration_percentile,
                    update_conv_rate, update_fc_rate)
from .regeneration import (regeneration_candidates, removed_slots, restore_slots, slot_scores, slot_shape,
                           update_persistence, virtual_weights)
from .schedule import (LayerSpec, SDSNNConfig, StructureSchedule, fc_layer_specs, network_layer_specs,
                       removed_synapse_report)
from .spines import SpineState, SpineUpdateInfo, constrain, constrain_inplace, init_spines, update_spines

__all__ = [
    # schedule
    "SDSNNConfig", "LayerSpec", "StructureSchedule", "fc_layer_specs", "network_layer_specs",
    "removed_synapse_report",
    # spines
    "SpineState", "SpineUpdateInfo", "init_spines", "update_spines", "constrain", "constrain_inplace",
    # pruning
    "minmax_normalise", "neuron_importance", "prune_target", "select_units_to_prune", "prune_step",
    "apply_unit_pruning",
    # regeneration
    "slot_shape", "slot_scores", "removed_slots", "virtual_weights", "regeneration_candidates",
    "update_persistence", "restore_slots",
    # rates
    "regeneration_percentile", "fc_rate_coefficient", "conv_rate_coefficient", "clip_rate",
    "update_fc_rate", "update_conv_rate",
    # events
    "StructureLog", "REMOVED", "RESTORED", "STAT_FIELDS", "INT_STAT_FIELDS",
]
