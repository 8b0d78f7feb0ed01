{# sdsnn_brian's thresholder for the packed input group (see sdsnn_brian/codegen.py).

   Input i is bit i % 32 of the packed value {{sdsnn_stim}}(t, i // 32) (sdsnn_brian/builder.py).
   Brian2's own template evaluates the group's threshold expression -- the same bit, through
   floor -- for every input at every step.  This one reads each packed value once and turns
   its set bits into spikes, in ascending order of the input index, as that loop does. #}
{# USES_VARIABLES { N, t } #}
{% extends 'common_group.cpp' %}
{% block maincode %}
    // scalar code
    const int _vectorisation_idx = -1;
    {{scalar_code|autoindent}}
    {% set _eventspace = get_array_name(eventspace_variable) %}

    long _count = 0;
    for (int64_t _block = 0; _block * {{sdsnn_bits}} < N; _block++)
    {
        uint32_t _packed = (uint32_t){{sdsnn_stim}}(t, _block);  // t: from the scalar code
        while (_packed)
        {
            const int64_t _idx = _block * {{sdsnn_bits}} + __builtin_ctz(_packed);
            _packed &= _packed - 1;
            if (_idx >= N)
                break;
            {{_eventspace}}[_count++] = _idx;
        }
    }
    {{_eventspace}}[N] = _count;
{% endblock %}

{% block after_code %}
{% set _eventspace = get_array_name(eventspace_variable) %}
{{_eventspace}}[N] = 0;  // the spike count (the array has N+1 elements)
{% endblock %}
