{# sdsnn_brian: the pathway's own `synapses` template finds the synapses of each spiking
   source directly (see synapses.cpp next to this file), so nothing is queued. #}
{# USES_VARIABLES { _n_sources, _n_targets, delay, _source_dt} #}
{% extends 'common_group.cpp' %}

{% block maincode %}
    // events are propagated straight from the source's spikespace (no spike queue)
{% endblock %}
