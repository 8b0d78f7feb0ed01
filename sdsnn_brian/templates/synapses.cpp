{# sdsnn_brian's event propagation for C++ standalone (see sdsnn_brian/codegen.py).

   Brian2's own `synapses` template walks the list of synapse indices that the spike queue
   copied for this step.  Here the synapses have one shared zero delay and are stored
   source-major, so the synapses reached by a spiking source are found directly from the
   source's spikespace: no queue, no copied index list.  Sources are taken in ascending
   order and each source's synapses in creation order -- the order Brian2's queue uses --
   so every membrane receives the same sum in the same order.

   `sdsnn_dense_rows` (set by the code object class): a pathway whose sources all reach the
   same targets J (ascending) in the same order, synapse q connecting source q // |J| to
   target J[q % |J|] -- all-to-all (J = every target), or all-to-all onto the targets that a
   pruned layer has left alive.  A source's row of weights is then added in one contiguous
   loop the compiler vectorises: into the targets' state itself when J is every target;
   otherwise into a copy of the targets' state at J, taken once per step before the first
   row and written back after the last (the same additions in the same order, so the same
   result).  The layout is checked once per process; a pathway that does not have it takes
   the general path. #}
{% extends 'common_synapses.cpp' %}

{% block extra_headers %}
{{ super() }}
#if defined(__GNUC__) && !defined(__clang__)
// the rows below add a target's inputs one after the other; -ffast-math (Brian2's default) would
// let GCC regroup those additions, and the sums must stay the ones Brian2's order gives
#pragma GCC optimize ("no-associative-math")
#endif
{% endblock %}

{% block maincode %}
    {# USES_VARIABLES { _synaptic_pre, _spikespace, _n_sources, _n_targets } #}
    // scalar code
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    const size_t _nsyn = {{_dynamic__synaptic_pre}}.size();
    const int32_t* const _src = _nsyn ? &{{_dynamic__synaptic_pre}}[0] : 0;
    const int32_t _n_spiking = {{_spikespace}}[_num_spikespace - 1];
    // the synapses of source i are _order[_offsets[i] .. _offsets[i+1]) (a stable counting
    // sort of _synaptic_pre; _order is not needed when the synapses are already source-major)
    static std::vector<size_t> _offsets;
    static std::vector<size_t> _order;
    static size_t _layout_n = (size_t)-1;
    static bool _source_major = true;
    static bool _dense = false;
    static std::vector<int32_t> _J;  // rows: the targets every source reaches, ascending
    static bool _all_targets = false;
    if (_layout_n != _nsyn)
    {
        _layout_n = _nsyn;
        _dense = false;
        {% if sdsnn_dense_rows and '_postsynaptic_idx' in variables %}
        if (_nsyn)
        {
            const int32_t* const _tgt = &{{get_array_name(variables['_postsynaptic_idx'], access_data=False)}}[0];
            size_t _nJ = 0;
            while (_nJ < _nsyn && _src[_nJ] == 0)
                _nJ++;
            _dense = _nsyn == (size_t)_n_sources * _nJ;
            for (size_t j = 1; _dense && j < _nJ; j++)
                _dense = _tgt[j - 1] < _tgt[j];
            for (int64_t s = 0, q = 0; _dense && s < _n_sources; s++)
                for (size_t j = 0; j < _nJ; j++, q++)
                    if (_src[q] != s || _tgt[q] != _tgt[j])
                    {
                        _dense = false;
                        break;
                    }
            _J.assign(_tgt, _tgt + (_dense ? _nJ : 0));
            _all_targets = _dense && _nJ == (size_t)_n_targets;
        }
        {% endif %}
        _order.clear();
        _source_major = true;
        if (!_dense)  // the rows need no offsets
        {
            _offsets.assign(_n_sources + 1, 0);
            for (size_t q = 0; q < _nsyn; q++)
            {
                _offsets[_src[q] + 1]++;
                if (q && _src[q] < _src[q - 1])
                    _source_major = false;
            }
            for (int64_t s = 0; s < _n_sources; s++)
                _offsets[s + 1] += _offsets[s];
            if (!_source_major)
            {
                std::vector<size_t> _next(_offsets.begin(), _offsets.end() - 1);
                _order.resize(_nsyn);
                for (size_t q = 0; q < _nsyn; q++)
                    _order[_next[_src[q]]++] = q;
            }
        }
    }

    {% if sdsnn_dense_rows and '_postsynaptic_idx' in variables %}
    {# inside a row, the target's position in J is the loop counter and the source is fixed #}
    {% set _post_load = get_array_name(variables['_postsynaptic_idx']) ~ '[_idx]' %}
    {% set _pre_load = get_array_name(variables['_synaptic_pre']) ~ '[_idx]' %}
    {% set _rows = vector_code|map('replace', _post_load, '_j')|map('replace', _pre_load, '_i')|list %}
    {# the targets' state variables the statements use (indexed by the target) #}
    {% set _post_arrays = [] %}
    {% for _name, _index in variable_indices.items() %}
    {% if _index == '_postsynaptic_idx' and _name in variables and _name != '_postsynaptic_idx' and variables[_name].size is defined and not variables[_name].scalar %}
    {% set _ = _post_arrays.append(get_array_name(variables[_name])) %}
    {% endif %}
    {% endfor %}
    {# the rows of the spiking sources, `width` synapses each, the statements `code` on each
       synapse: sources taken {{sdsnn_block}} at a time, so a target's state is loaded and stored
       once per {{sdsnn_block}} rows (added one row after the other, in the order of the sources)
       instead of once per row; the remaining sources one at a time #}
    {% macro rows(code, width) %}
    int32_t _k = 0;
    for (; _k + {{sdsnn_block}} <= _n_spiking; _k += {{sdsnn_block}})
    {
        {% for _b in range(sdsnn_block) %}
        const size_t _row{{_b}} = (size_t){{_spikespace}}[_k + {{_b}}] * {{width}};
        {% endfor %}
        for (int32_t _j = 0; _j < {{width}}; _j++)
        {
            {% for _b in range(sdsnn_block) %}
            {
                const int32_t _i = {{_spikespace}}[_k + {{_b}}];
                const size_t _idx = _row{{_b}} + _j;
                const size_t _vectorisation_idx = _idx;
                {{code|autoindent}}
            }
            {% endfor %}
        }
    }
    for (; _k < _n_spiking; _k++)
    {
        const int32_t _i = {{_spikespace}}[_k];
        const size_t _row = (size_t)_i * {{width}};
        for (int32_t _j = 0; _j < {{width}}; _j++)
        {
            const size_t _idx = _row + _j;
            const size_t _vectorisation_idx = _idx;
            {{code|autoindent}}
        }
    }
    {% endmacro %}
    if (_dense && _all_targets)
    {
        {{rows(_rows, '_n_targets')}}
    }
    else if (_dense)
    {
        const int32_t _nJ = (int32_t)_J.size();
        {% for _array in _post_arrays %}
        static std::vector<std::decay<decltype({{_array}}[0])>::type> _at_J{{loop.index}};
        {% endfor %}
        if (_n_spiking)
        {
            {% for _array in _post_arrays %}
            _at_J{{loop.index}}.resize(_nJ);
            for (int32_t _j = 0; _j < _nJ; _j++)
                _at_J{{loop.index}}[_j] = {{_array}}[_J[_j]];
            {% endfor %}
            {% set _ns = namespace(code=_rows) %}
            {% for _array in _post_arrays %}
            {% set _ns.code = _ns.code|map('replace', _array ~ '[_postsynaptic_idx]', '_at_J' ~ loop.index ~ '[_postsynaptic_idx]')|list %}
            {% endfor %}
            {{rows(_ns.code, '_nJ')}}
            {% for _array in _post_arrays %}
            for (int32_t _j = 0; _j < _nJ; _j++)
                {{_array}}[_J[_j]] = _at_J{{loop.index}}[_j];
            {% endfor %}
        }
    }
    else
    {% endif %}
    {
        for (int32_t _k = 0; _k < _n_spiking; _k++)
        {
            const int32_t _i = {{_spikespace}}[_k];
            const size_t _end = _offsets[_i + 1];
            for (size_t _q = _offsets[_i]; _q < _end; _q++)
            {
                const size_t _idx = _source_major ? _q : _order[_q];
                const size_t _vectorisation_idx = _idx;
                {{vector_code|autoindent}}
            }
        }
    }
{% endblock %}

{% block extra_functions_cpp %}
void _debugmsg_{{codeobj_name}}()
{
    using namespace brian;
    std::cout << "Number of synapses: " << {{_dynamic__synaptic_pre}}.size() << endl;
}
{% endblock %}

{% block extra_functions_h %}
void _debugmsg_{{codeobj_name}}();
{% endblock %}

{% macro main_finalise() -%}
#ifdef DEBUG
_debugmsg_{{codeobj_name}}();
#endif
{% endmacro %}
