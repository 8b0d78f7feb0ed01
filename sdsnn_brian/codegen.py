"""The generated C++: sdsnn_brian's event propagation, and the trims applied to Brian2's project.

Two things make a C++ standalone minibatch cheaper than Brian2's generic code, without
changing a single number it computes:

**Event propagation without a spike queue** (:func:`event_codeobj_class`).  Every synaptic
pathway the builder creates has one shared zero delay, so Brian2's spike queue only copies,
every step, the indices of the synapses of each spiking source into a list that the
``synapses`` code object then walks.  The code object class returned here renders the
pathway with the templates in ``sdsnn_brian/templates/`` instead (a Brian2 templater derived
from the C++ standalone one, so every other template stays Brian2's):

* ``synapses_push_spikes.cpp`` queues nothing;
* ``synapses.cpp`` reads the spiking sources from the source group's spikespace and walks
  each one's synapses directly (offsets computed once per process from ``_synaptic_pre``);
* with ``dense=True`` (an all-to-all layer, synapse ``q`` = source ``q // N_post``, target
  ``q % N_post``, checked once per process) a source's weights are added to the targets as
  one contiguous, vectorised loop.

The statements are still Brian2's (``on_pre`` compiled by Brian2's code generator); sources
are taken in ascending order and each source's synapses in creation order, which is the
order of Brian2's queue, so membranes receive the same sums in the same order.  Only the
``cpp_standalone`` device uses these classes (brian2cuda and the runtime device keep their
own code).  ``benchmarks/throughput.py`` measures both side by side (``event_code='brian2'``).

**Trims of the generated project** (:func:`tune_generated_code`, applied after code
generation, before ``make``):

* ``_write_arrays()`` no longer writes the synaptic arrays (indices, weights, delays: about
  10 MB per minibatch for 784-400-10 that nobody reads);
* a recorded 2-D array (a ``StateMonitor``) is written in one call instead of one system call
  per recorded step (2,000 per minibatch);
* ``Network::run`` no longer calls ``std::clock()`` (a system call here) after every step; it
  still measures the run's duration once at its end (Brian2's ``last_run_info``).

A generated file that does not match the expected text is left as Brian2 wrote it.
"""
from __future__ import annotations

import hashlib
import os
import re

__all__ = ["event_codeobj_class", "uses_event_code", "tune_generated_code", "source_version", "EVENT_CODES"]

#: ``'sdsnn'``: the queue-free propagation of this module; ``'brian2'``: Brian2's own templates.
EVENT_CODES = ("sdsnn", "brian2")

TEMPLATES_DIR = "templates"
_CLASSES = {}


def source_version() -> str:
    """A hash of this module and its templates: a change here means a new project."""
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.abspath(__file__)]
    tdir = os.path.join(here, TEMPLATES_DIR)
    paths += [os.path.join(tdir, f) for f in sorted(os.listdir(tdir))]
    for p in paths:
        with open(p, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:12]


def uses_event_code(event_code: str) -> bool:
    """Whether the current Brian2 device takes sdsnn_brian's event code (plain C++ standalone only)."""
    if event_code not in EVENT_CODES:
        raise ValueError(f"unknown event_code {event_code!r}; known: {list(EVENT_CODES)}")
    if event_code != "sdsnn":
        return False
    from brian2.devices.device import get_device
    from brian2.devices.cpp_standalone.device import CPPStandaloneDevice

    return type(get_device()) is CPPStandaloneDevice


def event_codeobj_class(dense: bool):
    """The C++ standalone code object class for a pathway (``dense``: all-to-all, source-major)."""
    dense = bool(dense)
    if dense not in _CLASSES:
        from brian2.devices.cpp_standalone.codeobject import CPPStandaloneCodeObject

        templater = CPPStandaloneCodeObject.templater.derive(
            "sdsnn_brian", templates_dir=TEMPLATES_DIR, env_globals={"sdsnn_dense_rows": dense})
        name = "DenseRowsCodeObject" if dense else "SourceRowsCodeObject"
        _CLASSES[dense] = type(name, (CPPStandaloneCodeObject,), {
            "templater": templater,
            "__doc__": "C++ standalone code object: synaptic events walked from the source's spikespace"
                       + (", all-to-all rows vectorised" if dense else ""),
        })
    return _CLASSES[dense]


# ---------------------------------------------------------------------------------------------
# trims of the generated project
# ---------------------------------------------------------------------------------------------
_WRITE_BLOCK = re.compile(
    r"    ofstream outfile_(?P<name>_(?:dynamic_)?array_syn\d+_\w+);\n.*?"
    r"Error writing output file for (?P=name)\.\" << endl;\n    }\n", re.S)

_ROWS_LOOP = re.compile(
    r"        for \(int n=0; n<(?P<a>_dynamic_array_\w+)\.n; n\+\+\)\n"
    r"        \{\n"
    r"            if \(! (?P=a)\(n\)\.empty\(\)\)\n"
    r"            \{\n"
    r"                (?P<f>outfile_\w+)\.write\(reinterpret_cast<char\*>\(&(?P=a)\(n, 0\)\), "
    r"(?P=a)\.m\*sizeof\((?P=a)\(0, 0\)\)\);\n"
    r"            \}\n"
    r"        \}\n")

_STEP_CLOCK = ("        current = std::clock();\n"
               "        elapsed_realtime = (double)(current - start)/(1 * CLOCKS_PER_SEC);\n")
_AFTER_LOOP = "    if(!did_break_early) t = t_end;\n"


def _rows_in_one_write(m) -> str:
    a, f = m["a"], m["f"]
    return (f"        {{  // sdsnn_brian: the rows of {a} in one write\n"
            f"            const size_t _row_bytes = {a}.m*sizeof({a}(0, 0));\n"
            f"            std::vector<char> _rows;\n"
            f"            _rows.reserve({a}.n*_row_bytes);\n"
            f"            for (int n=0; n<{a}.n; n++)\n"
            f"                if (! {a}(n).empty())\n"
            f"                    _rows.insert(_rows.end(), reinterpret_cast<char*>(&{a}(n, 0)),\n"
            f"                                 reinterpret_cast<char*>(&{a}(n, 0)) + _row_bytes);\n"
            f"            if (!_rows.empty())\n"
            f"                {f}.write(&_rows[0], _rows.size());\n"
            f"        }}\n")


def _objects_cpp(text: str) -> tuple[str, int]:
    start = text.find("void _write_arrays()")
    end = text.find("void _dealloc_arrays()", start)
    if start < 0 or end < 0:
        return text, 0
    body, n1 = _WRITE_BLOCK.subn("", text[start:end])
    body, n2 = _ROWS_LOOP.subn(_rows_in_one_write, body)
    return text[:start] + body + text[end:], n1 + n2


def _network_cpp(text: str) -> tuple[str, int]:
    if _STEP_CLOCK not in text or _AFTER_LOOP not in text:
        return text, 0
    text = text.replace(_STEP_CLOCK, "", 1)
    text = text.replace(_AFTER_LOOP, "    current = std::clock();  // sdsnn_brian: once, not after every step\n"
                        "    elapsed_realtime = (double)(current - start)/(1 * CLOCKS_PER_SEC);\n" + _AFTER_LOOP, 1)
    return text, 1


def _rewrite(path: str, transform) -> int:
    """Apply ``transform`` to a generated file, keeping an old modification time when the result
    is what an earlier build already compiled (so ``make`` has nothing to do)."""
    if not os.path.exists(path):
        return 0
    with open(path) as fh:
        text = fh.read()
    new, n = transform(text)
    if not n:
        return 0
    saved = path + ".tuned"
    same = os.path.exists(saved) and open(saved).read() == new
    with open(path, "w") as fh:
        fh.write(new)
    if not same:
        with open(saved, "w") as fh:
            fh.write(new)
    st = os.stat(saved)
    os.utime(path, (st.st_atime, st.st_mtime))
    return n


def tune_generated_code(project_dir) -> int:
    """Apply the trims described in the module docstring to a generated C++ standalone project.

    Returns the number of edits.  A project that was already tuned identically keeps its old
    modification times, so ``make`` does not recompile it.
    """
    return (_rewrite(os.path.join(project_dir, "objects.cpp"), _objects_cpp)
            + _rewrite(os.path.join(project_dir, "network.cpp"), _network_cpp))

