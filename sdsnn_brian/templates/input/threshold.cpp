{# sdsnn_brian's thresholder for the packed input group (see sdsnn_brian/codegen.py).

   Input i is bit i % 32 of the packed value {{sdsnn_stim}}(t, i // 32) (sdsnn_brian/builder.py).
   Brian2's own template evaluates the group's threshold expression -- the same bit, through
   floor -- for every input at every step.  This one reads each packed value once and turns
   its set bits into spikes, in ascending order of the input index, as that loop does. #}
{# USES_VARIABLES { N, t } #}
{% extends 'common_group.cpp' %}
{% block extra_headers %}
{{ super() }}
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
{% endblock %}
{% block maincode %}
    // scalar code
    const int _vectorisation_idx = -1;
    {{scalar_code|autoindent}}
    {% set _eventspace = get_array_name(eventspace_variable) %}

    long _count = 0;
    {# one packed value's set bits as spikes, lowest bit first #}
    {% macro bits_one_by_one() %}
    while (_packed)
    {
        const int64_t _idx = _block * {{sdsnn_bits}} + __builtin_ctz(_packed);
        _packed &= _packed - 1;
        if (_idx >= N)
            break;
        {{_eventspace}}[_count++] = _idx;
    }
    {% endmacro %}
    for (int64_t _block = 0; _block * {{sdsnn_bits}} < N; _block++)
    {
        uint32_t _packed = (uint32_t){{sdsnn_stim}}(t, _block);  // t: from the scalar code
        {% if sdsnn_bits == 32 %}
#if defined(__AVX512F__)
        // AVX-512: the indices of the set bits of each 16-bit half packed in a register, in
        // ascending order, and stored at once (no branch per spike); the plain loop where the
        // two 16-wide stores would not fit before the count's slot, or the block runs past N
        if (_count + 32 <= N && (_block + 1) * 32 <= N)
        {
            const __m512i _first = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                    _mm512_set1_epi32((int)(_block * 32)));
            const __mmask16 _low = (__mmask16)(_packed & 0xffffu), _high = (__mmask16)(_packed >> 16);
            _mm512_storeu_si512((void*)({{_eventspace}} + _count), _mm512_maskz_compress_epi32(_low, _first));
            _count += __builtin_popcount((unsigned)_low);
            _mm512_storeu_si512((void*)({{_eventspace}} + _count),
                                _mm512_maskz_compress_epi32(_high, _mm512_add_epi32(_first, _mm512_set1_epi32(16))));
            _count += __builtin_popcount((unsigned)_high);
            continue;
        }
#endif
        {% endif %}
        {{bits_one_by_one()|autoindent}}
    }
    {{_eventspace}}[N] = _count;
{% endblock %}

{% block after_code %}
{% set _eventspace = get_array_name(eventspace_variable) %}
{{_eventspace}}[N] = 0;  // the spike count (the array has N+1 elements)
{% endblock %}
