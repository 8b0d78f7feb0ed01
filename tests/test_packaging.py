"""The wheel carries every file the package reads at run time (issue 18's packaging bug)."""
import configparser
import fnmatch
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_package_data_lists_every_template():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    patterns = [p.strip() for p in cfg["options.package_data"]["sdsnn_brian"].split(",")]
    pkg = os.path.join(ROOT, "sdsnn_brian")
    shipped_here = []
    for folder, _, files in os.walk(os.path.join(pkg, "templates")):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), pkg).replace(os.sep, "/")
            shipped_here.append(rel)
            assert any(fnmatch.fnmatch(rel, p) and rel.count("/") == p.count("/") for p in patterns), \
                f"{rel} is read at run time but setup.cfg's package_data does not ship it"
    assert "templates/group/threshold.cpp" in shipped_here
    assert "templates/conv/synapses.cpp" in shipped_here
