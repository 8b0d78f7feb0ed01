"""The generated C++: sdsnn_brian's event propagation, input decoding, serving mode, and the
trims applied to Brian2's project.

Six things make a C++ standalone minibatch cheaper than Brian2's generic code, without
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
* with ``dense=True``, a pathway whose sources all reach the same ascending targets ``J``
  (synapse ``q`` = source ``q // |J|``, target ``J[q % |J|]``, checked once per process):
  a source's weights are added as one contiguous, vectorised loop -- into the targets'
  state when ``J`` is every target (all-to-all), else into a copy of the state at ``J``
  taken once per step and written back after the last row (a layer whose other neurons
  were pruned, built by ``Simulator(masks=...)``: its cost falls with the neurons left).
  The rows of ``ROWS_BLOCK`` (4) spiking sources are added in one pass over the targets, so a
  target's state is loaded and stored once per 4 rows instead of once per row (each row still
  added after the one before; the file is compiled without ``-fassociative-math``, so the
  compiler cannot regroup those additions).

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
* ``Network::run`` no longer calls ``std::clock()`` (a system call here; ``omp_get_wtime()`` in an
  OpenMP build) after every step; it still measures the run's duration once at its end (Brian2's
  ``last_run_info``);
* the scheduler tests each code object's clock against the earliest clock directly (the
  criterion ``next_clocks`` uses) instead of searching a ``std::set`` of current clocks, which
  becomes a ``std::vector`` (no allocation per step) -- in ``network.cpp`` and ``network.h``
  together (:func:`_network_files`).

**Convolutions applied from their kernel** (:func:`conv_codeobj_class`): a conv layer's pathway
holds one synapse per kernel entry and its code (``templates/conv/synapses.cpp``) adds, for each
spiking source, the kernel slice to the membranes of its output window: the build holds O(kernel +
neurons) instead of one synapse per (input position, output position, kernel entry), and only the
kernel is uploaded per minibatch; spikes and membranes equal the per-synapse build's bit for bit.

**Packed input decoding** (:func:`input_codeobj_class`): the input group's thresholder reads
each packed 32-bit value once per step and turns its set bits into spikes
(``templates/input/threshold.cpp``), instead of evaluating the threshold expression -- the
same bit -- for every input.

**Thresholds and membrane monitors of the trained layers** (:func:`group_codeobj_class`): a
layer's thresholder tests 8 neurons at a time and stores spikes without a branch
(``templates/group/threshold.cpp``); its ``StateMonitor`` writes each step into a row through a
pointer and keeps the rows from one minibatch to the next in the serving mode, instead of
creating a zero-filled row vector at every step (``templates/group/statemonitor.cpp``).

**Serving mode** (:func:`_serve_main`, part of :func:`tune_generated_code`): ``main --serve``
sets the network up once and then runs one minibatch per line of standard input, its state put
back from a snapshot before each; :class:`sdsnn_brian.device.Simulator` keeps one such process
per simulator.

Every trim is text matched against what Brian2 generates (2.8 with and without OpenMP, 2.10).
A trim that does not find its text raises :class:`GeneratedCodeMismatch` before any file is
written: the build stops with the file and the text named, rather than compiling a project
tuned in one file and not in another.
"""
from __future__ import annotations

import hashlib
import os
import re

__all__ = ["event_codeobj_class", "conv_codeobj_class", "CONV_MARKER", "input_codeobj_class", "group_codeobj_class", "uses_event_code", "tune_generated_code", "serving_supported", "source_version",
           "EVENT_CODES", "SERVE_DONE", "GeneratedCodeMismatch"]

#: ``'sdsnn'``: the queue-free propagation of this module; ``'brian2'``: Brian2's own templates.
EVENT_CODES = ("sdsnn", "brian2")

TEMPLATES_DIR = "templates"
#: Spiking sources whose rows the rows path adds in one pass over the targets
#: (``templates/synapses.cpp``).
ROWS_BLOCK = 4
INPUT_TEMPLATES_DIR = "templates/input"
GROUP_TEMPLATES_DIR = "templates/group"
CONV_TEMPLATES_DIR = "templates/conv"
#: The comment ``templates/conv/synapses.cpp`` puts at the head of every kernel loop it renders
#: (followed by the layer's geometry): how a build shows that its conv layers run as kernels.
CONV_MARKER = "// sdsnn_brian: convolution kernel loop"
_CLASSES = {}


def source_version() -> str:
    """A hash of this module and its templates: a change here means a new project."""
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.abspath(__file__)]
    for folder in (TEMPLATES_DIR, INPUT_TEMPLATES_DIR, GROUP_TEMPLATES_DIR, CONV_TEMPLATES_DIR):
        tdir = os.path.join(here, folder)
        paths += [os.path.join(tdir, f) for f in sorted(os.listdir(tdir)) if f.endswith(".cpp")]
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
    """The C++ standalone code object class for a pathway (``dense``: compile the rows path in;
    whether a pathway has the rows layout is checked when it first runs)."""
    dense = bool(dense)
    if dense not in _CLASSES:
        from brian2.devices.cpp_standalone.codeobject import CPPStandaloneCodeObject

        templater = CPPStandaloneCodeObject.templater.derive(
            "sdsnn_brian", templates_dir=TEMPLATES_DIR, env_globals={"sdsnn_dense_rows": dense, "sdsnn_block": ROWS_BLOCK})
        name = "DenseRowsCodeObject" if dense else "SourceRowsCodeObject"
        _CLASSES[dense] = type(name, (CPPStandaloneCodeObject,), {
            "templater": templater,
            "__doc__": "C++ standalone code object: synaptic events walked from the source's spikespace"
                       + (", all-to-all rows vectorised" if dense else ""),
        })
    return _CLASSES[dense]


def _template_failure(message):
    """Called from a template that cannot apply (see ``templates/conv/synapses.cpp``): code
    generation stops with :class:`GeneratedCodeMismatch` instead of rendering other code."""
    import brian2

    raise GeneratedCodeMismatch(f"sdsnn_brian's template does not apply to the code Brian2 {brian2.__version__} "
                                f"generated: {message}")


#: The geometry a conv code object class is made for, in this order.
CONV_GEOMETRY = ("C_in", "H", "W", "C_out", "Ho", "Wo", "kh", "kw", "sh", "sw", "ph", "pw")


def conv_codeobj_class(geometry: dict):
    """The C++ standalone code object class for a convolution built as its kernel.

    ``geometry``: the keys of :data:`CONV_GEOMETRY` (the operator's input ``C_in x H x W``,
    its output ``C_out x Ho x Wo``, kernel, stride and padding).  The pathway's synapses are
    the kernel entries (:class:`~sdsnn_brian.layers.KernelMap`: synapse ``q`` carries entry
    ``kernel_entry[q]`` of the flat ``(C_out, C_in, kh, kw)`` kernel and its weight ``w[q]``);
    ``templates/conv/synapses.cpp`` decodes each spiking source ``(c, y, x)`` and applies the
    pathway's statements (Brian2's ``on_pre``) to every output position its window reaches,
    once per kernel entry of that offset, output channel by output channel.  Entries whose
    weight is 0 at the first step of a run are skipped for that run.  Spiking sources are
    taken in ascending order and a source reaches each target through one kernel entry, so
    every membrane receives the same sum in the same order as through one Brian2 synapse per
    (input position, output position, kernel entry).  In a step with many events (more additions
    than twice the layer's neurons) the targets' state is first copied into an array ordered
    (position, output channel), where a kernel offset's entries are contiguous and a full offset
    (every output channel live) is added as one vectorised loop, and copied back after the last
    source -- the same additions in the same order.  No spike is queued
    (``templates/synapses_push_spikes.cpp``).  A pathway whose statements do not load their target
    through ``_postsynaptic_idx``, or use it otherwise than to index the target's state variables,
    stops code generation with :class:`GeneratedCodeMismatch`.
    """
    missing = [k for k in CONV_GEOMETRY if k not in geometry]
    if missing:
        raise ValueError(f"conv geometry lacks {missing}")
    g = tuple(int(geometry[k]) for k in CONV_GEOMETRY)
    key = ("conv",) + g
    if key not in _CLASSES:
        base = event_codeobj_class(False)  # its push_spikes template (nothing queued) is this class's too
        templater = base.templater.derive(
            "sdsnn_brian", templates_dir=CONV_TEMPLATES_DIR,
            env_globals={"sdsnn_conv": dict(zip(CONV_GEOMETRY, g)), "sdsnn_conv_marker": CONV_MARKER,
                         "sdsnn_fail": _template_failure})
        _CLASSES[key] = type("ConvKernelCodeObject", (base,), {
            "templater": templater,
            "__doc__": "C++ standalone code object: a convolution applied from its kernel, source by source",
        })
    return _CLASSES[key]


def input_codeobj_class(stim_name: str, bits: int):
    """The C++ standalone code object class for the packed input group (``layer0``).

    Its thresholder reads each packed value ``stim_name(t, block)`` once per step and turns
    the set bits into spikes (``templates/input/threshold.cpp``), instead of evaluating the
    group's threshold expression -- the same bit -- for every input.
    """
    key = ("input", stim_name, int(bits))
    if key not in _CLASSES:
        from brian2.devices.cpp_standalone.codeobject import CPPStandaloneCodeObject

        templater = CPPStandaloneCodeObject.templater.derive(
            "sdsnn_brian", templates_dir=INPUT_TEMPLATES_DIR,
            env_globals={"sdsnn_stim": stim_name, "sdsnn_bits": int(bits)})
        _CLASSES[key] = type("PackedInputCodeObject", (CPPStandaloneCodeObject,), {
            "templater": templater,
            "__doc__": "C++ standalone code object: packed input bits decoded a value at a time",
        })
    return _CLASSES[key]


def group_codeobj_class():
    """The C++ standalone code object class for the trained layers' groups and membrane monitors.

    A group's thresholder stores its spikes without a branch (``templates/group/threshold.cpp``);
    a ``StateMonitor`` writes each step into a row it keeps from one run to the next
    (``templates/group/statemonitor.cpp``).  Every other code object of the group is Brian2's.
    """
    key = "group"
    if key not in _CLASSES:
        from brian2.devices.cpp_standalone.codeobject import CPPStandaloneCodeObject

        templater = CPPStandaloneCodeObject.templater.derive("sdsnn_brian", templates_dir=GROUP_TEMPLATES_DIR)
        _CLASSES[key] = type("LayerCodeObject", (CPPStandaloneCodeObject,), {
            "templater": templater,
            "__doc__": "C++ standalone code object: branch-free thresholds, monitors that keep their rows",
        })
    return _CLASSES[key]


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


class GeneratedCodeMismatch(RuntimeError):
    """A trim of the generated project did not find the text it was written for: the project is
    left as Brian2 wrote it (no file half-tuned) and the build stops."""


def _mismatch(name: str, what: str):
    import brian2

    return GeneratedCodeMismatch(
        f"{name} generated by Brian2 {brian2.__version__} does not have the text sdsnn_brian's trim expects "
        f"({what}); nothing was changed. sdsnn_brian.codegen needs updating for this Brian2 version")


def _objects_cpp(text: str) -> tuple[str, int]:
    start = text.find("void _write_arrays()")
    end = text.find("void _dealloc_arrays()", start)
    if start < 0 or end < 0:
        raise _mismatch("objects.cpp", "no _write_arrays() followed by _dealloc_arrays()")
    body, n1 = _WRITE_BLOCK.subn("", text[start:end])
    body, n2 = _ROWS_LOOP.subn(_rows_in_one_write, body)
    if re.search(r"outfile__(?:dynamic_)?array_syn\d+_", body):
        raise _mismatch("objects.cpp", "a synaptic array's write block in _write_arrays()")
    if re.search(r"for \(int n=0; n<\w+\.n; n\+\+\)\n\s*\{", body):
        raise _mismatch("objects.cpp", "a 2-D recording's loop of one write per row")
    return text[:start] + body + text[end:], n1 + n2


#: The run loop's timer after every step (``std::clock()`` is a system call here): Brian2 2.8 without
#: OpenMP, and with OpenMP.  Brian2 2.10 times the run once, after the loop, already.
_STEP_TIMER = re.compile(
    r"\n(?P<timer>        current = std::clock\(\);\n"
    r"        elapsed_realtime = \(double\)\(current - start\)/\(1 \* CLOCKS_PER_SEC\);\n"
    r"|        elapsed_realtime = omp_get_wtime\(\) - start;\n)")
_AFTER_LOOP = "    if(!did_break_early) t = t_end;\n"
_ONCE = "  // sdsnn_brian: once, not after every step"
#: The scheduler's per-object test, a ``std::set`` search for every code object at every step ...
_CLOCK_FIND = re.compile(r"^            if \(curclocks\.find\(obj_clock\) != curclocks\.end\(\)\)\n", re.M)
#: ... becomes next_clocks' own criterion (``clock`` is the earliest clock; ticks come after the loop).
_CLOCK_TEST = ("            if (obj_clock == clock || obj_clock->t[0] == clock->t[0]"
               " || fabs(obj_clock->t[0] - clock->t[0]) <= Clock_epsilon)  // sdsnn_brian: no set search\n")
#: The current clocks as a vector (filled and ticked every step, without a set's allocations);
#: the clock class is ``Clock`` (Brian2 2.8) or ``BaseClock`` (2.10).
_CURCLOCKS_DECL = re.compile(r"^    std::set<(?P<c>\w+)\*> clocks, curclocks;\n", re.M)
_CURCLOCKS_INSERT = re.compile(r"^            curclocks\.insert\(clock\);\n", re.M)
_CURCLOCKS_TICK = re.compile(r"^        for\(std::set<(?P<c>\w+)\*>::iterator i=curclocks\.begin\(\); "
                             r"i!=curclocks\.end\(\); i\+\+\)\n", re.M)


def _network_files(cpp: str, h: str) -> tuple[str, str, int]:
    """The scheduler trims of ``network.cpp`` and ``network.h``, applied to both files or to neither.

    ``Network::run`` times the run once, after its loop, instead of after every step (Brian2 2.8,
    with or without OpenMP; Brian2 2.10 does so already); the current clocks become a vector,
    tested against the earliest clock without a set search.  Returns both texts and the number of
    edits (0 for files tuned already); raises :class:`GeneratedCodeMismatch` when either file
    does not have the text these trims were written for."""
    n = 0
    m = _STEP_TIMER.search(cpp)
    if m is not None and _AFTER_LOOP in cpp:
        once = "".join(line[4:] for line in m["timer"].splitlines(True))
        once = once.replace(";\n", ";" + _ONCE + "\n", 1)
        cpp = cpp[:m.start()] + "\n" + cpp[m.end():]
        cpp = cpp.replace(_AFTER_LOOP, once + _AFTER_LOOP, 1)
        n += 1
    run = cpp[cpp.find("void Network::run("):cpp.find("void Network::compute_clocks()")]
    loop = run[run.find("    while("):]
    loop = loop[:loop.find("\n    }\n")]
    if not run or not loop or "elapsed_realtime" in loop or run.count("elapsed_realtime = ") != 1:
        raise _mismatch("network.cpp", "Network::run timing the run once, after the loop of steps "
                        "(a maximum_run_time needs the timer after every step)")
    edits = [(_CLOCK_FIND, lambda m: _CLOCK_TEST, "cpp"),
             (_CURCLOCKS_INSERT, lambda m: "            curclocks.push_back(clock);\n", "cpp"),
             (_CURCLOCKS_TICK, lambda m: f"        for(std::vector<{m['c']}*>::iterator i=curclocks.begin(); "
                                         "i!=curclocks.end(); i++)\n", "cpp"),
             (_CURCLOCKS_DECL, lambda m: f"    std::set<{m['c']}*> clocks;\n"
                                         f"    std::vector<{m['c']}*> curclocks;  // sdsnn_brian: a vector\n", "h")]
    found = [len(pattern.findall(cpp if f == "cpp" else h)) for pattern, _, f in edits]
    if found == [1, 1, 1, 1] and "#include<vector>" in h:
        for pattern, repl, f in edits:
            if f == "cpp":
                cpp = pattern.sub(repl, cpp, count=1)
            else:
                h = pattern.sub(repl, h, count=1)
        n += 1
    elif not (found == [0, 0, 0, 0] and "// sdsnn_brian: no set search" in cpp
              and "// sdsnn_brian: a vector" in h):  # not tuned already either
        raise _mismatch("network.cpp/network.h", "the scheduler's set of current clocks: "
                        f"{found} of its find/insert/tick/declaration (1 each expected)")
    return cpp, h, n


def _write_tuned(path: str, new: str):
    """Write a tuned file, keeping an old modification time when the result is what an earlier
    build already compiled (so ``make`` has nothing to do)."""
    saved = path + ".tuned"
    same = os.path.exists(saved) and open(saved).read() == new
    with open(path, "w") as fh:
        fh.write(new)
    if not same:
        with open(saved, "w") as fh:
            fh.write(new)
    st = os.stat(saved)
    os.utime(path, (st.st_atime, st.st_mtime))


# ---------------------------------------------------------------------------------------------
# serving minibatches from one process
# ---------------------------------------------------------------------------------------------
#: The line a serving binary prints after each request, followed by the simulation's seconds.
SERVE_DONE = "sdsnn_done"

_ARRAY_DECL = re.compile(r"^extern (?P<type>[\w:<> ]+?) ?\*(?P<name>_array_\w+);$", re.M)
_DYN_DECL = re.compile(r"^extern std::vector<(?P<type>[\w:]+)> (?P<name>_dynamic_array_\w+);$", re.M)
_DYN2_DECL = re.compile(r"^extern DynamicArray2D<(?P<type>[\w:]+)> (?P<name>_dynamic_array_\w+);$", re.M)
_SYNAPSES_DECL = re.compile(r"^extern std::vector<\w+> _dynamic_array_(?P<syn>\w+)__synaptic_pre;$", re.M)
_RUN_BLOCK = re.compile(
    r"(?P<i>[ \t]*)set_from_command_line\(args\);\n"
    r"(?P<run>[ \t]*(?P<net>\w+)\.run\([^\n]*\);\n)"
    r"(?P<after>(?:[ \t]*_after_run_\w+\(\);\n)*)")
_MAIN_START = "int main(int argc, char **argv)\n{\n"
_RESULT_FILE = re.compile(r'outfile_(?P<name>_dynamic_array_\w+)\.open\(results_dir \+ "(?P<file>\w+)"')

#: The file with the C++ of the serving mode that does not depend on the network.
SERVE_SOURCE = "serve.cpp"


def _steps_array(name: str, dyn: list, kept):
    """The time array of the monitor that records the 2-D array ``name`` (its length is the
    number of steps recorded), or None when that monitor does not keep its rows (only
    ``templates/group/statemonitor.cpp`` does)."""
    if name not in kept:
        return None
    owners = [d for d in dyn if d.endswith("_t") and name.startswith(d[:-1])]
    return max(owners, key=len) if owners else None


def _serve_support(objects_h: str, objects_cpp: str, kept=frozenset()) -> str:
    """C++ that snapshots the state after set-up, puts it back before every request, and
    publishes the recordings after it.

    Put back: every fixed-size array (neuron variables, clocks, spike spaces, monitor
    counters) and every dynamic array that was empty after set-up (the monitors'
    recordings).  Kept: the synapses (built once; a run changes no synaptic variable of the
    networks the builder creates, and the weights come with every request) and the index
    arrays ``connect`` created them from.  Published: the recordings, each into the file of
    the name Brian2 gives it, mapped into memory (``reserve`` in ``templates/serve.cpp``).
    """
    synapses = _SYNAPSES_DECL.findall(objects_h)
    skip = {f"_array_{s}_{v}" for s in synapses for v in ("sources", "targets")}
    fixed = [(m["type"].strip(), m["name"]) for m in _ARRAY_DECL.finditer(objects_h) if m["name"] not in skip]
    dyn = [m["name"] for m in _DYN_DECL.finditer(objects_h)]
    dyn2 = [m["name"] for m in _DYN2_DECL.finditer(objects_h)]
    files = {m["name"]: m["file"] for m in _RESULT_FILE.finditer(objects_cpp)}
    out = [name for name in dyn + dyn2 if name in files]
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), TEMPLATES_DIR, SERVE_SOURCE)) as fh:
        common = fh.read()
    lines = ["// sdsnn_brian: serving minibatches from one process (see sdsnn_brian/codegen.py)",
             "#include <sstream>", "#include <cstring>", "#include <fcntl.h>", "#include <sys/mman.h>",
             "#include <unistd.h>", "namespace sdsnn_serve {", common]
    lines += [f"static std::vector<{t}> _fixed{k};  // {name}" for k, (t, name) in enumerate(fixed)]
    lines.append(f"static bool _was_empty[{max(len(dyn), 1)}];")
    lines.append(f"static Mapped _out[{max(len(out), 1)}];")
    lines.append("void snapshot()\n{\n    using namespace brian;")
    lines += [f"    if ({name}) _fixed{k}.assign({name}, {name} + _num_{name});" for k, (t, name) in enumerate(fixed)]
    lines += [f"    _was_empty[{k}] = {name}.empty();" for k, name in enumerate(dyn)]
    lines.append("}\nvoid restore()\n{\n    using namespace brian;")
    lines += [f"    if ({name}) std::copy(_fixed{k}.begin(), _fixed{k}.end(), {name});"
              for k, (t, name) in enumerate(fixed)]
    lines += [f"    if (_was_empty[{k}]) {name}.clear();" for k, name in enumerate(dyn)]
    # a 2-D recording keeps its rows (the monitor template of this package rewrites them; its
    # recorded steps are counted by the monitor's time array); one without such a count is emptied
    steps = {name: _steps_array(name, dyn, kept) for name in dyn2}
    lines += [f"    {name}.resize(0, {name}.m);" for name in dyn2 if steps[name] is None]
    lines.append("}\nvoid publish_results()\n{\n    using namespace brian;")
    for k, name in enumerate(out):  # the recordings: 2-D arrays, and 1-D ones empty after set-up
        cond = "" if name in dyn2 else f"if (_was_empty[{dyn.index(name)}]) "
        rows = f", {steps[name]}.size()" if steps.get(name) else ""
        lines.append(f'    {cond}publish(_out[{k}], results_dir + "{files[name]}", {name}{rows});')
    lines.append("}\n}  // namespace sdsnn_serve\n")
    return "\n".join(lines) + "\n"


def _serve_main(text: str, objects_h: str, objects_cpp: str, kept=frozenset()) -> tuple[str, int]:
    """Give ``main`` a serving mode: ``main --results_dir DIR --serve`` sets up the network once
    (synapses included), then answers one request per line of standard input (the
    ``name=file`` arguments of a run, tab-separated): state put back to what it was after
    set-up, arguments applied, the network run, the recordings published into memory-mapped
    files in DIR, and one line ``sdsnn_done <seconds>`` printed.  Without ``--serve`` the
    binary runs once as before."""
    if "sdsnn_serve::next_request" in text:
        return text, 0  # tuned already
    m = _RUN_BLOCK.search(text)
    if m is None or _MAIN_START not in text:
        raise _mismatch("main.cpp", "main() with set_from_command_line(args) followed by the network's run")
    i = m["i"]
    body = "".join(i + "    " + line.lstrip() for line in (m["run"] + m["after"]).splitlines(True))
    block = (f"{i}if (_sdsnn_serving)\n{i}{{\n"
             f"{i}    sdsnn_serve::snapshot();\n"
             f"{i}    std::vector<std::string> _request;\n"
             f"{i}    while (sdsnn_serve::next_request(_request))\n{i}    {{\n"
             f"{i}        sdsnn_serve::restore();\n"
             f"{i}        {m['net']}.t = 0.0;\n"
             f"{i}        set_from_command_line(_request);\n"
             + "".join("    " + line for line in body.splitlines(True)) +
             f"{i}        sdsnn_serve::publish_results();\n"
             f'{i}        std::cout << "{SERVE_DONE} " << Network::_last_run_time << std::endl;\n'
             f"{i}    }}\n"
             f"{i}    _dealloc_arrays();\n"
             f"{i}    return 0;\n"
             f"{i}}}\n"
             f"{i}set_from_command_line(args);\n" + m["run"] + m["after"])
    text = text[:m.start()] + block + text[m.end():]
    flag = ("    bool _sdsnn_serving = false;  // sdsnn_brian: --serve answers requests from stdin\n"
            "    for (size_t _a = 0; _a < args.size(); _a++)\n"
            "        if (args[_a] == \"--serve\")\n"
            "        {\n"
            "            _sdsnn_serving = true;\n"
            "            args.erase(args.begin() + _a);\n"
            "            break;\n"
            "        }\n")
    anchor = "\tbrian_start();\n"
    if anchor not in text:
        raise _mismatch("main.cpp", "brian_start() in main()")
    text = text.replace(anchor, flag + anchor, 1)
    text = text.replace(_MAIN_START, _serve_support(objects_h, objects_cpp, kept) + _MAIN_START, 1)
    return text, 1


def serving_supported(project_dir) -> bool:
    """Whether the generated binary in ``project_dir`` has the ``--serve`` mode."""
    path = os.path.join(project_dir, "main.cpp")
    if not os.path.exists(path):
        return False
    with open(path) as fh:
        return "sdsnn_serve::next_request" in fh.read()


def tune_generated_code(project_dir) -> int:
    """Apply the trims described in the module docstring to a generated C++ standalone project,
    and give ``main`` its serving mode (:func:`_serve_main`).

    Returns the number of edits.  A project that was already tuned identically keeps its old
    modification times, so ``make`` does not recompile it.  A trim that does not find its text
    raises :class:`GeneratedCodeMismatch`, and then no file is written.
    """
    with open(os.path.join(project_dir, "objects.h")) as fh:
        objects_h = fh.read()
    kept = _kept_rows(project_dir)
    texts = {}
    for name in ("objects.cpp", "network.cpp", "network.h", "main.cpp"):
        with open(os.path.join(project_dir, name)) as fh:
            texts[name] = fh.read()
    objects_cpp = texts["objects.cpp"]  # as Brian2 wrote it: every recording's results file is named there
    # every trim is worked out before any file is written: one that does not apply raises, and
    # leaves the whole project as Brian2 wrote it
    new = dict(texts)
    new["objects.cpp"], n_objects = _objects_cpp(texts["objects.cpp"])
    new["network.cpp"], new["network.h"], n_network = _network_files(texts["network.cpp"], texts["network.h"])
    new["main.cpp"], n_main = _serve_main(texts["main.cpp"], objects_h, objects_cpp, kept)
    for name, text in new.items():
        if text != texts[name]:
            _write_tuned(os.path.join(project_dir, name), text)
    return n_objects + n_network + n_main


_KEPT_ROWS = re.compile(r"// sdsnn_brian: rows kept: (\w+)")


def _kept_rows(project_dir) -> frozenset:
    """The 2-D recordings whose monitor keeps its rows from one run to the next
    (``templates/group/statemonitor.cpp`` marks them)."""
    folder = os.path.join(project_dir, "code_objects")
    names = set()
    for f in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if f.endswith(".cpp"):
            with open(os.path.join(folder, f)) as fh:
                names.update(_KEPT_ROWS.findall(fh.read()))
    return frozenset(names)

