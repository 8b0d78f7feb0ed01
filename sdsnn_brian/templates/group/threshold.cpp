{# sdsnn_brian's thresholder for the trained layers (see sdsnn_brian/codegen.py).

   Brian2's template tests the threshold condition of one neuron at a time and stores a spiking
   neuron's index behind a branch.  Without refractoriness this one tests 8 neurons at once (a
   vectorised loop) and looks at them one by one only when one of them spikes, storing each
   index without a branch (the count advances by the condition); the spikespace gets the same
   indices in the same (ascending) order.  With refractoriness it is Brian2's loop. #}
{# USES_VARIABLES { N } #}
{% extends 'common_group.cpp' %}
{% block maincode %}
    // scalar code
    const int _vectorisation_idx = -1;
    {{scalar_code|autoindent}}
    {% set _eventspace = get_array_name(eventspace_variable) %}

    long _count = 0;
    {% if _uses_refractory %}
    for (size_t _idx = 0; _idx < N; _idx++)
    {
        const size_t _vectorisation_idx = _idx;
        {{vector_code|autoindent}}
        if (_cond)
        {
            {{_eventspace}}[_count++] = _idx;
            {{not_refractory}}[_idx] = false;
            {{lastspike}}[_idx] = {{t}};
        }
    }
    {% else %}
    // neurons 8 at a time: the condition of all 8 (a vectorised loop), and only where one of them
    // spikes the indices stored, each written and kept by advancing the count by its condition
    size_t _base = 0;
    for (; _base + 8 <= (size_t)N; _base += 8)
    {
        bool _any = false;
        for (size_t _idx = _base; _idx < _base + 8; _idx++)
        {
            const size_t _vectorisation_idx = _idx;
            {{vector_code|autoindent}}
            _any |= (bool)_cond;
        }
        if (_any)
            for (size_t _idx = _base; _idx < _base + 8; _idx++)
            {
                const size_t _vectorisation_idx = _idx;
                {{vector_code|autoindent}}
                {{_eventspace}}[_count] = _idx;
                _count += (bool)_cond;
            }
    }
    for (size_t _idx = _base; _idx < (size_t)N; _idx++)
    {
        const size_t _vectorisation_idx = _idx;
        {{vector_code|autoindent}}
        {{_eventspace}}[_count] = _idx;
        _count += (bool)_cond;
    }
    {% endif %}
    {{_eventspace}}[N] = _count;
{% endblock %}

{% block after_code %}
{% set _eventspace = get_array_name(eventspace_variable) %}
{{_eventspace}}[N] = 0;  // the spike count (the array has N+1 elements)
{% endblock %}
