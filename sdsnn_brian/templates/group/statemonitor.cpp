{# sdsnn_brian's StateMonitor for the trained layers' membranes (see sdsnn_brian/codegen.py).

   Brian2's template resizes every recorded 2-D array at every step (one new row vector,
   zero-filled, then written through two indirections).  This one creates a row only when
   the array has none for this step yet -- a serving process (`main --serve`) keeps the rows
   of the previous request, so after the first one no step allocates -- and writes the step's
   values through a pointer to the row.  The values and the array's rows are Brian2's. #}
{# USES_VARIABLES { t, _clock_t, _indices, N } #}
{# WRITES_TO_READ_ONLY_VARIABLES { t, N } #}
{% extends 'common_group.cpp' %}

{% block maincode %}
    {{_dynamic_t}}.push_back({{_clock_t}});
    const size_t _new_size = {{_dynamic_t}}.size();
    {% for varname, var in _recorded_variables | dictsort %}
    {% set _recorded = get_array_name(var, access_data=False) %}
    // sdsnn_brian: rows kept: {{_recorded}}
    if ((size_t){{_recorded}}.n < _new_size || (size_t){{_recorded}}.m != (size_t)_num_indices)
        {{_recorded}}.resize(_new_size, _num_indices);
    {{c_data_type(var.dtype)}}* const _row_{{varname}} = _num_indices ? &{{_recorded}}(_new_size - 1, 0) : 0;
    {% endfor %}

    // scalar code
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    for (int _i = 0; _i < (int)_num_indices; _i++)
    {
        // vector code
        const size_t _idx = {{_indices}}[_i];
        const size_t _vectorisation_idx = _idx;
        {{vector_code|autoindent}}
        {% for varname, var in _recorded_variables | dictsort %}
        _row_{{varname}}[_i] = _to_record_{{varname}};
        {% endfor %}
    }

    {{N}} = _new_size;
{% endblock %}
