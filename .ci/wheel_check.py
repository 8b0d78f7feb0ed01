#!/usr/bin/env python3
"""CI: a non-editable install trains.

Builds the wheel from a copy of the working tree (the files git tracks or would track, so the
checkout gets no build/ or egg-info and nothing stale or ignored goes in), checks that it
ships every template the code generation reads, installs it with its dependencies into a
fresh virtual environment, and from a directory outside the repository (the source tree is
not importable there; PYTHONPATH is cleared) trains a tiny network with the installed
``sdsnn`` command, compiling from the installed templates into an empty cache.  Passes when
the command exits with 0 and wrote ``summary.json``; every temporary directory is removed.

    python .ci/wheel_check.py            # the interpreter that runs it builds and makes the venv

MNIST is read from ``<repo>/../shared/data/mnist`` (``SDSNN_MNIST_DIR`` overrides it).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = "sdsnn_brian/templates/group/threshold.cpp"
IGNORED = {".git", ".venv", "build", "dist", "runs", "output", ".whl", ".pytest_cache", ".sdsnn_cache",
           "__pycache__"}


def say(msg):
    print(f"wheel check: {msg}", flush=True)


def run(cmd, **kw):
    say("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def copy_tree(dst):
    """The working tree's files as a fresh clone plus uncommitted changes would hold them."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
        files = [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: everything but the usual clutter
        shutil.copytree(ROOT, dst, ignore=lambda d, names: [n for n in names if n in IGNORED
                                                            or n.endswith((".egg-info", ".pyc"))])
        return
    for rel in files:
        src = os.path.join(ROOT, rel)
        if os.path.isfile(src):  # a tracked file deleted in the working tree is left out
            os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dst, rel))


def source_templates():
    pkg = os.path.join(ROOT, "sdsnn_brian")
    return sorted(os.path.relpath(os.path.join(d, f), ROOT).replace(os.sep, "/")
                  for d, _, fs in os.walk(os.path.join(pkg, "templates")) for f in fs)


def main():
    t0 = time.perf_counter()
    laps = []  # (phase, seconds)

    def lap(phase):
        laps.append((phase, time.perf_counter() - t0 - sum(s for _, s in laps)))
    mnist = os.path.abspath(os.environ.get("SDSNN_MNIST_DIR") or os.path.join(ROOT, "..", "shared", "data", "mnist"))
    if not os.path.isdir(mnist):
        sys.exit(f"wheel check: no MNIST directory at {mnist} (set SDSNN_MNIST_DIR)")
    tmp = tempfile.mkdtemp(prefix="sdsnn-wheel-check-")
    try:
        src, dist, venv = (os.path.join(tmp, d) for d in ("src", "dist", "venv"))
        outside, cache, run_dir = (os.path.join(tmp, d) for d in ("cwd", "cache", "run"))
        os.makedirs(outside)
        copy_tree(src)
        run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, src])
        wheels = [f for f in os.listdir(dist) if f.endswith(".whl")]
        assert len(wheels) == 1, f"expected one wheel in {dist}, got {wheels}"
        wheel = os.path.join(dist, wheels[0])
        with zipfile.ZipFile(wheel) as zf:
            shipped = set(zf.namelist())
        missing = [t for t in source_templates() if t not in shipped]
        assert not missing, f"the wheel lacks templates the code generation reads: {missing}"
        say(f"built {wheels[0]} ({len(shipped)} files, every template in it)")
        lap("wheel")

        run([sys.executable, "-m", "venv", venv])
        py = os.path.join(venv, "bin", "python")
        run([py, "-m", "pip", "install", "-q", wheel])

        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "SDSNN_MNIST_DIR")}
        env.update(SDSNN_CACHE_DIR=cache, PYTHONWARNINGS="ignore")
        where = subprocess.run(
            [py, "-c", "import importlib.metadata as m, os, sdsnn_brian; "
                       f"files = [str(f) for f in m.files('sdsnn_brian')]; "
                       f"assert {TEMPLATE!r} in files, 'the installed package lacks {TEMPLATE}'; "
                       f"assert os.path.isfile(m.distribution('sdsnn_brian').locate_file({TEMPLATE!r})); "
                       "print(os.path.dirname(sdsnn_brian.__file__))"],
            cwd=outside, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
        site = os.path.realpath(venv) + os.sep
        assert os.path.realpath(where).startswith(site), f"sdsnn_brian imported from {where}, not the new venv"
        say(f"installed into {where}, {TEMPLATE} among its files")
        lap("venv + install")

        run([os.path.join(venv, "bin", "sdsnn"), "train", "--hidden", "8", "--steps", "4", "--train-limit", "40",
             "--test-limit", "20", "--batch-size", "20", "--epochs", "1", "--log-every", "0",
             "--run-dir", run_dir, "--mnist-dir", mnist], cwd=outside, env=env)
        assert os.path.isfile(os.path.join(run_dir, "summary.json")), f"no summary.json in {run_dir}"
        assert os.listdir(cache), f"nothing was compiled into {cache}"
        lap("train (compile included)")
    except (AssertionError, subprocess.CalledProcessError) as exc:
        sys.exit(f"wheel check FAILED after {time.perf_counter() - t0:.0f} s: {exc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lap("clean-up")
    say(f"passed in {time.perf_counter() - t0:.0f} s (" + ", ".join(f"{p} {s:.0f} s" for p, s in laps)
        + "): the installed wheel trained a network")


if __name__ == "__main__":
    main()
