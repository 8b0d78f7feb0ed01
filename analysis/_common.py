"""Shared command line of the analysis scripts: a run (or comparison) directory in, PNGs out.

Each script names its figure family; the drawing is :func:`sdsnn_brian.reporting.figures.render_figure`.
Given a comparison directory, every sub-run the figures apply to gets its own PNGs under
``OUT/<sub-run>/``.
"""
import argparse
import os
import sys


def run_family(names, description, argv=None):
    from sdsnn_brian.reporting import (FIGURES, RunDirectoryError, applicable, comparison_runs,
                                       is_comparison_dir, load_run, render_figure)

    prog = os.path.basename(sys.argv[0]) if argv is None else "analysis"
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory, or a comparison directory (every sub-run)")
    p.add_argument("--out", default=None, metavar="DIR", help="directory for the PNGs (default: RUN_DIR/report)")
    p.add_argument("--cache-dir", default=None, help="compiled-project cache (default: ~/.cache/sdsnn_brian)")
    p.add_argument("--samples", type=int, nargs="+", default=[0, 1, 2], help="test samples for rasters")
    args = p.parse_args(argv)
    out = args.out or os.path.join(args.run_dir, "report")
    ctx = {"cache_dir": args.cache_dir, "samples": args.samples}
    try:
        if is_comparison_dir(args.run_dir):
            runs = comparison_runs(args.run_dir)
            targets = [(r, os.path.join(out, n)) for n, r in runs.items()]
        else:
            targets = [(load_run(args.run_dir), out)]
        written = []
        for run, where in targets:
            for name in names:
                why = applicable(FIGURES[name], run)
                if why:
                    print(f"{run.name}: {name} not drawn ({why})")
                    continue
                path = render_figure(run, name, os.path.join(where, f"{name}.png"), **ctx)
                written.append(path)
                print(path)
        if not written:
            raise ValueError(f"no figure of this family applies to {args.run_dir}")
    except (ValueError, RunDirectoryError, FileNotFoundError, PermissionError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0
