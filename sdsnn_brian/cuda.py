"""brian2cuda settings: generate CUDA standalone projects anywhere, compile them wherever nvcc is.

:func:`configure_cuda` sets Brian2's preferences for the ``cuda_standalone``
device so that a project can be generated and compiled on a machine without a
GPU (the binary then runs on a machine with one):

* GPU detection off; the GPU id and the compute capability (default 9.0,
  ``sm_90``: H100/H200) are given instead;
* C++17 for nvcc and for the host compiler (CUDA 13 rejects C++11, Brian2's
  default), and no ``-march=native`` in the host flags (the binary is meant to
  run on another machine);
* cuRAND (brian2cuda links ``-lcurand`` even when the model draws no random
  numbers) taken from the CUDA toolkit when it has it, otherwise from the
  ``nvidia-curand`` wheel (``pip install nvidia-curand``); the wheel ships only
  ``libcurand.so.10``, so a ``libcurand.so`` link is made in a cache directory.

:func:`check_toolchain` finds nvcc and cuRAND and raises :class:`ToolchainError`
saying what to install when one is missing.

Preferences are global to the process: :func:`configure_cuda` remembers the
host-compiler preferences it changes and :func:`restore_cpp_prefs` puts them
back (the C++ standalone device calls it before its own builds, so a CUDA build
in the same process does not change how later C++ projects are compiled).
"""
from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import shutil

__all__ = ["configure_cuda", "check_toolchain", "check_target", "find_nvcc", "find_curand", "restore_cpp_prefs",
           "ToolchainError", "CURAND_INSTALL_HINT", "NVCC_INSTALL_HINT"]

CURAND_INSTALL_HINT = ("install the cuRAND wheel into this Python environment: `pip install nvidia-curand` "
                       "(CUDA 13; `pip install nvidia-curand-cu12` for a CUDA 12 toolkit, or the extra "
                       "`pip install \"sdsnn_brian[cuda]\"`), or pass curand_dir=/ --curand-dir pointing to a "
                       "directory with include/curand.h and lib/libcurand.so*")
NVCC_INSTALL_HINT = ("install the NVIDIA CUDA toolkit (it provides nvcc; e.g. `apt-get install cuda-toolkit-13-0` "
                     "or the runfile from developer.nvidia.com/cuda-downloads) and put nvcc on PATH, or set "
                     "CUDA_PATH to the toolkit directory")

# host-compiler preferences configure_cuda changes, with their values before the first change
_CPP_PREFS = ("codegen.cpp.extra_compile_args_gcc", "codegen.cpp.include_dirs", "codegen.cpp.library_dirs",
              "codegen.cpp.runtime_library_dirs")
_SAVED: dict = {}


class ToolchainError(RuntimeError):
    """nvcc or cuRAND is missing; the message says what to install."""


# -- finding the tools ----------------------------------------------------------------
def find_nvcc(nvcc: str | None = None) -> str | None:
    """Path of nvcc: ``nvcc`` if given, else ``$CUDA_PATH/bin/nvcc``, ``PATH``, ``/usr/local/cuda/bin``."""
    if nvcc:
        return nvcc if os.path.isfile(nvcc) and os.access(nvcc, os.X_OK) else None
    cands = []
    if os.environ.get("CUDA_PATH"):
        cands.append(os.path.join(os.environ["CUDA_PATH"], "bin", "nvcc"))
    which = shutil.which("nvcc")
    if which:
        cands.append(which)
    cands += ["/usr/local/cuda/bin/nvcc", "/opt/cuda/bin/nvcc"]
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def _curand_in(root: str) -> dict | None:
    """cuRAND in ``root`` (``include/curand.h`` and ``lib*/libcurand.so*``), or None."""
    inc = os.path.join(root, "include")
    if not os.path.isfile(os.path.join(inc, "curand.h")):
        return None
    for libdir in ("lib", "lib64", os.path.join("targets", "x86_64-linux", "lib")):
        d = os.path.join(root, libdir)
        libs = sorted(glob.glob(os.path.join(d, "libcurand.so*")))
        if libs:
            plain = os.path.join(d, "libcurand.so")
            return {"include_dir": inc, "library_dir": d,
                    "library": plain if os.path.exists(plain) else libs[-1], "root": root}
    return None


def _wheel_roots() -> list:
    """Candidate roots inside the ``nvidia`` namespace package (``nvidia/cu13``, ``nvidia/curand``...)."""
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    roots = []
    for base in spec.submodule_search_locations:
        for sub in ("cu13", "curand", "cu12"):
            roots.append(os.path.join(base, sub))
        roots += sorted(glob.glob(os.path.join(base, "*")))
    return roots


def find_curand(curand_dir: str | None = None, nvcc: str | None = None) -> dict | None:
    """Where cuRAND is: ``{'include_dir', 'library_dir', 'library', 'root', 'source'}`` or None.

    Looks in ``curand_dir`` if given (only there), else in the CUDA toolkit of ``nvcc``
    and then in the ``nvidia-curand`` wheel of this Python environment.
    """
    if curand_dir:
        found = _curand_in(curand_dir)
        return dict(found, source="curand_dir") if found else None
    nvcc = find_nvcc(nvcc)
    roots = []
    if nvcc:
        real = os.path.realpath(nvcc)
        roots.append(os.path.dirname(os.path.dirname(real)))
    roots += ["/usr/local/cuda"]
    for r in roots:
        found = _curand_in(r)
        if found:
            return dict(found, source="cuda")
    for r in _wheel_roots():
        found = _curand_in(r)
        if found:
            return dict(found, source="wheel")
    return None


def _linkable_dir(curand: dict) -> str:
    """A directory holding ``libcurand.so`` (a link to the wheel's ``libcurand.so.N`` when needed)."""
    if os.path.basename(curand["library"]) == "libcurand.so":
        return curand["library_dir"]
    from .device import cache_root

    target = os.path.realpath(curand["library"])
    digest = hashlib.sha256(target.encode()).hexdigest()[:12]
    d = os.path.join(cache_root(), f"curand-link-{digest}")
    os.makedirs(d, exist_ok=True)
    link = os.path.join(d, "libcurand.so")
    if os.path.realpath(link) != target:
        tmp = f"{link}.tmp{os.getpid()}"
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, link)  # atomic: concurrent processes agree
    return d


def check_toolchain(nvcc: str | None = None, curand_dir: str | None = None, need_nvcc: bool = True,
                    need_curand: bool = True) -> dict:
    """``{'nvcc': path or None, 'curand': dict or None}``; :class:`ToolchainError` when a needed tool is missing."""
    path = find_nvcc(nvcc)
    missing = []
    if need_nvcc and path is None:
        where = f"{nvcc!r} is not an executable file" if nvcc else "nvcc was not found (CUDA_PATH, PATH, /usr/local/cuda)"
        missing.append(f"{where}: {NVCC_INSTALL_HINT}")
    cur = find_curand(curand_dir, path)
    if need_curand and cur is None:
        where = (f"no include/curand.h with lib/libcurand.so* under {curand_dir!r}" if curand_dir
                 else "cuRAND (curand.h, libcurand.so) was found neither in the CUDA toolkit nor in the "
                      "nvidia-curand wheel")
        missing.append(f"{where}: {CURAND_INSTALL_HINT}")
    if missing:
        raise ToolchainError("cannot compile the CUDA project: " + "; ".join(missing))
    return {"nvcc": path, "curand": cur}


# -- preferences ------------------------------------------------------------------------
def _save_cpp_prefs():
    from brian2 import prefs

    if not _SAVED:
        for name in _CPP_PREFS:
            _SAVED[name] = list(prefs[name])


def restore_cpp_prefs():
    """Put back the host-compiler preferences :func:`configure_cuda` changed (no-op if none)."""
    if not _SAVED:
        return
    from brian2 import prefs

    for name, value in _SAVED.items():
        prefs[name] = list(value)
    _SAVED.clear()


def _host_flags(flags, march_native):
    out = []
    for f in flags:
        if f.startswith("-std="):
            continue
        if not march_native and (f.startswith("-march=") or f.startswith("-mtune=")):
            continue
        out.append(f)
    return out + ["-std=c++17"]


def check_target(compute_capability, gpu_id):
    """``(float compute capability, int gpu id)``, validated (``ValueError``)."""
    try:
        compute_capability = float(compute_capability)
    except (TypeError, ValueError):
        raise ValueError(f"compute_capability must be a number such as 9.0, got {compute_capability!r}") from None
    if not 3.5 <= compute_capability < 20:
        raise ValueError(f"compute_capability {compute_capability} is not a CUDA compute capability (e.g. 8.0, 9.0)")
    if isinstance(gpu_id, bool) or not isinstance(gpu_id, (int,)) or gpu_id < 0:
        raise ValueError(f"gpu_id must be a non-negative integer, got {gpu_id!r}")
    return compute_capability, int(gpu_id)


def configure_cuda(compute_capability=9.0, gpu_id=0, detect_gpus=False, compile=True, curand_dir=None,
                   extra_nvcc=(), nvcc=None, march_native=False) -> dict:
    """Set the preferences of the ``cuda_standalone`` device (call after ``set_device``).

    Parameters
    ----------
    compute_capability : float
        Target architecture (9.0 -> ``-arch=sm_90``); ignored with ``detect_gpus=True``.
    gpu_id : int
        The GPU the binary will use.
    detect_gpus : bool
        Ask ``nvidia-smi`` for the GPUs (only where there is one).
    compile : bool
        Whether the project will be compiled here: then nvcc and cuRAND must be
        present (:class:`ToolchainError` otherwise).  Without compilation a missing
        nvcc or cuRAND is tolerated (the generated makefile points to
        ``/usr/local/cuda/bin/nvcc``; override ``NVCC`` when calling ``make``).
    curand_dir : str, optional
        Directory with ``include/curand.h`` and ``lib/libcurand.so*``.
    extra_nvcc : sequence of str
        More nvcc flags (e.g. ``['--fmad=false']``).
    nvcc : str, optional
        Path of nvcc (default: found as in :func:`find_nvcc`).
    march_native : bool
        Keep ``-march=native`` in the host flags (only for binaries run on this machine).

    Returns a dict describing what was set (nvcc, cuRAND directories, flags).
    """
    from brian2 import prefs
    import brian2cuda  # noqa: F401  (registers the cuda_standalone preferences)
    from brian2cuda.utils import gputools

    compute_capability, gpu_id = check_target(compute_capability, gpu_id)
    tools = check_toolchain(nvcc, curand_dir, need_nvcc=compile, need_curand=compile)
    backend = prefs.devices.cuda_standalone.cuda_backend
    backend.detect_gpus = bool(detect_gpus)
    backend.gpu_id = int(gpu_id)
    backend.compute_capability = None if detect_gpus else compute_capability
    nvcc_flags = [f for f in ("-w", "-use_fast_math")] + ["-std=c++17"] + [str(f) for f in extra_nvcc]
    backend.extra_compile_args_nvcc = nvcc_flags
    if tools["nvcc"]:
        real = os.path.realpath(tools["nvcc"])
        backend.cuda_path = os.path.dirname(os.path.dirname(real))
        backend.detect_cuda = True
    else:  # code generation only: any path will do for the makefile
        backend.cuda_path = "/usr/local/cuda"
        backend.detect_cuda = False
    gputools.reset_cuda_installation()
    gputools.reset_gpu_selection()

    _save_cpp_prefs()
    prefs["codegen.cpp.extra_compile_args_gcc"] = _host_flags(_SAVED["codegen.cpp.extra_compile_args_gcc"],
                                                              march_native)
    inc = list(_SAVED["codegen.cpp.include_dirs"])
    libs = list(_SAVED["codegen.cpp.library_dirs"])
    rt = list(_SAVED["codegen.cpp.runtime_library_dirs"])
    cur = tools["curand"]
    if cur is not None:
        inc.append(cur["include_dir"])
        link_dir = _linkable_dir(cur)
        libs += [link_dir] if link_dir == cur["library_dir"] else [link_dir, cur["library_dir"]]
        rt.append(cur["library_dir"])
    prefs["codegen.cpp.include_dirs"] = inc
    prefs["codegen.cpp.library_dirs"] = libs
    prefs["codegen.cpp.runtime_library_dirs"] = rt
    return {"nvcc": tools["nvcc"], "curand": cur, "compute_capability": compute_capability, "gpu_id": int(gpu_id),
            "nvcc_flags": nvcc_flags, "host_flags": list(prefs["codegen.cpp.extra_compile_args_gcc"])}
