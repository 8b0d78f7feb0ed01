{# sdsnn_brian: a convolution applied from its kernel (see conv_codeobj_class in sdsnn_brian/codegen.py).

   The pathway's synapses are the kernel entries (sdsnn_brian.layers.KernelMap): synapse q carries
   kernel entry kernel_entry[q] of the flat (C_out, C_in, kh, kw) kernel and its weight w[q]; its
   pre/post indices are placeholders.  For every spiking source (c, y, x) of the operator's input
   map, for every kernel offset (ky, kx) whose output position (oy, ox) lies inside the output map
   (oy*sh + ky - ph = y, ox*sw + kx - pw = x), the pathway's statements (Brian2's on_pre, compiled
   by Brian2) run once per kernel entry (co, c, ky, kx) on the target (co, oy, ox).

   Sources are taken in ascending order, and one source reaches one target through one kernel
   entry only, so every target receives the same additions in the same order as through one
   Brian2 synapse per (input position, output position, kernel entry).  Entries whose weight is 0
   when a run starts (its first step) are left out of that run: they would add nothing.

   Two passes, chosen per step, with the same additions in the same order: with few events, into
   the targets' state directly (the entries of one offset reach targets one channel plane apart);
   with many (more than twice the targets), into a copy of the targets' state ordered (position,
   output channel), where the entries of one offset are contiguous -- a "full" tap (every output
   channel live) is added as one loop the compiler vectorises -- copied back after the last source.
   Memory: the kernel, index tables of its size, and that copy (the size of the layer); nothing per
   position and kernel entry. #}
{% extends 'common_synapses.cpp' %}

{% block extra_headers %}
{{ super() }}
#if defined(__GNUC__) && !defined(__clang__)
// every target's additions stay in the order of the sources (no regrouping by -ffast-math)
#pragma GCC optimize ("no-associative-math")
#endif
{% endblock %}

{% block maincode %}
    {# USES_VARIABLES { _synaptic_pre, _spikespace, _n_sources, _n_targets, kernel_entry, w, t_in_timesteps } #}
    {% set g = sdsnn_conv %}
    {% set _post_load = get_array_name(variables['_postsynaptic_idx']) ~ '[_idx]' if '_postsynaptic_idx' in variables else '' %}
    {% set _pre_load = get_array_name(variables['_synaptic_pre']) ~ '[_idx]' %}
    {% set _joined = vector_code|join('\n') %}
    {% if not _post_load or _post_load not in _joined %}
    {{ sdsnn_fail("the pathway's statements of " ~ owner.name ~ " do not load their target as " ~ (_post_load or "_postsynaptic_idx")) }}
    {% endif %}
    {% set _code = vector_code|map('replace', _post_load, '_j')|map('replace', _pre_load, '_i')|list %}
    {% set _code_joined = _code|join('\n') %}
    {% if '_synaptic_post[' in _code_joined or '_synaptic_pre[' in _code_joined %}
    {{ sdsnn_fail("the pathway's statements of " ~ owner.name ~ " index the synapses' pre/post arrays otherwise than " ~ _post_load ~ " / " ~ _pre_load) }}
    {% endif %}
    {# the targets' state variables the statements use (indexed by the target): in the channel-last
       pass they are read from and written to a copy ordered (position, output channel) #}
    {% set _post_arrays = [] %}
    {% for _name, _index in variable_indices.items() %}
    {% if _index == '_postsynaptic_idx' and _name in variables and _name != '_postsynaptic_idx' and variables[_name].size is defined and not variables[_name].scalar %}
    {% set _ = _post_arrays.append(get_array_name(variables[_name])) %}
    {% endif %}
    {% endfor %}
    {% set _ns = namespace(code=_code, acc_uses=0) %}
    {% for _array in _post_arrays %}
    {% set _ns.code = _ns.code|map('replace', _array ~ '[_postsynaptic_idx]', '_acc' ~ loop.index ~ '[_postsynaptic_idx]')|list %}
    {% endfor %}
    {% set _acc_code = _ns.code %}
    {% set _acc_joined = _acc_code|join('\n') %}
    {% for _array in _post_arrays %}
    {% set _ns.acc_uses = _ns.acc_uses + _acc_joined.count('_acc' ~ loop.index ~ '[_postsynaptic_idx]') %}
    {% endfor %}
    {% if not _post_arrays or _acc_joined.count('_postsynaptic_idx') != 1 + _ns.acc_uses %}
    {{ sdsnn_fail("the pathway's statements of " ~ owner.name ~ " use their target otherwise than through its state variables") }}
    {% endif %}
    {{ sdsnn_conv_marker }}: C_in={{g.C_in}} H={{g.H}} W={{g.W}} -> C_out={{g.C_out}} Ho={{g.Ho}} Wo={{g.Wo}}, kernel {{g.kh}}x{{g.kw}}, stride {{g.sh}}x{{g.sw}}, padding {{g.ph}}x{{g.pw}}
    // scalar code
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    const int32_t _H = {{g.H}}, _W = {{g.W}}, _Ho = {{g.Ho}}, _Wo = {{g.Wo}};
    const int32_t _kh = {{g.kh}}, _kw = {{g.kw}}, _sh = {{g.sh}}, _sw = {{g.sw}}, _ph = {{g.ph}}, _pw = {{g.pw}};
    const int32_t _C_in = {{g.C_in}}, _C_out = {{g.C_out}};
    const int32_t _n_taps = _C_in * _kh * _kw;
    const int32_t _n_entries = _C_out * _n_taps;
    const int32_t _plane = _Ho * _Wo;
    const size_t _nsyn = {{_dynamic__synaptic_pre}}.size();
    const int32_t _n_spiking = {{_spikespace}}[_num_spikespace - 1];
    // the entries of tap (c, ky, kx) with a non-zero weight: _live_q[_tap_start[tap] .. _tap_start[tap+1])
    // (synapse indices, ascending), with their output channels in _live_co; a tap whose live entries are
    // every output channel in order, on consecutive synapses, is "full" (its entries are added as one
    // contiguous loop in the channel-last pass).  Rebuilt when a run starts (the weights may be new).
    static std::vector<int32_t> _tap_start;
    static std::vector<int32_t> _live_q;
    static std::vector<int32_t> _live_co;
    static std::vector<char> _tap_full;
    static size_t _layout_n = (size_t)-1;
    if (_layout_n != _nsyn || {{t_in_timesteps}} == 0)
    {
        _layout_n = _nsyn;
        std::vector<int32_t> _tap_of(_nsyn);
        _tap_start.assign(_n_taps + 1, 0);
        for (size_t _q = 0; _q < _nsyn; _q++)
        {
            const int32_t _e = {{kernel_entry}}[_q];
            if (_e < 0 || _e >= _n_entries)
            {
                std::cerr << "sdsnn_brian: synapse " << _q << " of {{owner.name}} has kernel entry " << _e
                          << ", outside the kernel of " << _n_entries << " entries" << std::endl;
                exit(1);
            }
            _tap_of[_q] = _e % _n_taps;  // (c*kh + ky)*kw + kx
            if ({{w}}[_q] != 0)
                _tap_start[_tap_of[_q] + 1]++;
        }
        for (int32_t _t = 0; _t < _n_taps; _t++)
            _tap_start[_t + 1] += _tap_start[_t];
        _live_q.resize(_tap_start[_n_taps]);
        _live_co.resize(_tap_start[_n_taps]);
        std::vector<int32_t> _next(_tap_start.begin(), _tap_start.end() - 1);
        for (size_t _q = 0; _q < _nsyn; _q++)
            if ({{w}}[_q] != 0)
            {
                const int32_t _slot = _next[_tap_of[_q]]++;
                _live_q[_slot] = (int32_t)_q;
                _live_co[_slot] = {{kernel_entry}}[_q] / _n_taps;
            }
        _tap_full.assign(_n_taps, 0);
        for (int32_t _t = 0; _t < _n_taps; _t++)
        {
            const int32_t _a = _tap_start[_t];
            bool _full = _tap_start[_t + 1] - _a == _C_out;
            for (int32_t _o = 0; _full && _o < _C_out; _o++)
                _full = _live_co[_a + _o] == _o && _live_q[_a + _o] == _live_q[_a] + _o;
            _tap_full[_t] = _full;
        }
    }
    const int32_t* const _tap_first = _tap_start.empty() ? 0 : &_tap_start[0];
    const int32_t* const _lq = _live_q.empty() ? 0 : &_live_q[0];
    const int32_t* const _lco = _live_co.empty() ? 0 : &_live_co[0];
    const char* const _full_tap = _tap_full.empty() ? 0 : &_tap_full[0];

    {# the valid kernel offsets of spiking source _i (ascending sources), `body` run once per offset with
       _tap and _base (the output position oy*Wo + ox) set #}
    {% macro each_offset(body) %}
    for (int32_t _k = 0; _k < _n_spiking; _k++)
    {
        const int32_t _i = {{_spikespace}}[_k];
        const int32_t _c = _i / (_H * _W);
        const int32_t _yx = _i - _c * (_H * _W);
        const int32_t _y = _yx / _W;
        const int32_t _x = _yx - _y * _W;
        for (int32_t _ky = 0; _ky < _kh; _ky++)
        {
            const int32_t _ny = _y + _ph - _ky;  // oy * sh
            if (_ny < 0 || _ny % _sh != 0 || _ny / _sh >= _Ho)
                continue;
            const int32_t _row = (_ny / _sh) * _Wo;
            for (int32_t _kx = 0; _kx < _kw; _kx++)
            {
                const int32_t _nx = _x + _pw - _kx;  // ox * sw
                if (_nx < 0 || _nx % _sw != 0 || _nx / _sw >= _Wo)
                    continue;
                const int32_t _base = _row + _nx / _sw;
                const int32_t _tap = (_c * _kh + _ky) * _kw + _kx;
                {{ body }}
            }
        }
    }
    {% endmacro %}
    // Many events this step (more additions than twice the targets): the targets' state is copied into
    // an array ordered (position, output channel), where the entries of one kernel offset are
    // contiguous, added there (a full tap as one vectorised loop), and copied back.  Few events: added
    // into the targets' state directly.  Either way each target receives the same additions in the
    // same order (sources ascending; one entry per source and target).
    {% for _array in _post_arrays %}
    static std::vector<std::decay<decltype({{_array}}[0])>::type> _acc_store{{loop.index}};
    {% endfor %}
    const int64_t _events = (int64_t)_n_spiking * ((_kh * _kw + _sh * _sw - 1) / (_sh * _sw)) * _C_out;
    if (_n_spiking && _events > 2 * (int64_t)_C_out * _plane)
    {
        {% for _array in _post_arrays %}
        _acc_store{{loop.index}}.resize((size_t)_C_out * _plane);
        std::decay<decltype({{_array}}[0])>::type* __restrict const _acc{{loop.index}} = &_acc_store{{loop.index}}[0];
        for (int32_t _o = 0; _o < _C_out; _o++)
            for (int32_t _p = 0; _p < _plane; _p++)
                _acc{{loop.index}}[(size_t)_p * _C_out + _o] = {{_array}}[(size_t)_o * _plane + _p];
        {% endfor %}
        {% set _channel_last %}
const int32_t _first = _tap_first[_tap];
const int32_t _j0 = _base * _C_out;
if (_full_tap[_tap])
{
    const int32_t _q0 = _lq[_first];
    #pragma GCC ivdep
    for (int32_t _o = 0; _o < _C_out; _o++)
    {
        const size_t _idx = _q0 + _o;
        const size_t _vectorisation_idx = _idx;
        const int32_t _j = _j0 + _o;
        {{_acc_code|autoindent}}
    }
}
else
{
    const int32_t _end = _tap_first[_tap + 1];
    for (int32_t _s = _first; _s < _end; _s++)
    {
        const size_t _idx = _lq[_s];
        const size_t _vectorisation_idx = _idx;
        const int32_t _j = _j0 + _lco[_s];
        {{_acc_code|autoindent}}
    }
}
        {% endset %}
        {{ each_offset(_channel_last) }}
        {% for _array in _post_arrays %}
        for (int32_t _o = 0; _o < _C_out; _o++)
            for (int32_t _p = 0; _p < _plane; _p++)
                {{_array}}[(size_t)_o * _plane + _p] = _acc{{loop.index}}[(size_t)_p * _C_out + _o];
        {% endfor %}
    }
    else if (_n_spiking)
    {
        {% set _direct %}
const int32_t _end = _tap_first[_tap + 1];
for (int32_t _s = _tap_first[_tap]; _s < _end; _s++)
{
    const size_t _idx = _lq[_s];
    const size_t _vectorisation_idx = _idx;
    const int32_t _j = _lco[_s] * _plane + _base;
    {{_code|autoindent}}
}
        {% endset %}
        {{ each_offset(_direct) }}
    }
{% endblock %}

{% block extra_functions_cpp %}
void _debugmsg_{{codeobj_name}}()
{
    using namespace brian;
    std::cout << "Number of synapses (kernel entries): " << {{_dynamic__synaptic_pre}}.size() << endl;
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
