"""The event-data protocols run end to end on synthetic data in the published layouts (--smoke)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tonic")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("protocol,classes", [("sdsnn_nmnist.py", 10), ("sdsnn_dvsgesture.py", 11)])
def test_protocol_smoke(protocol, classes, tmp_path):
    env = dict(os.environ, SDSNN_EVENTS_CACHE=str(tmp_path / "frames"))
    out = subprocess.run([sys.executable, str(ROOT / "protocols" / protocol), "--smoke", "--run-dir",
                          str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| dense |" in out.stdout and "| sdsnn-reference |" in out.stdout
    assert (tmp_path / "run" / "comparison.md").exists()
    dense = json.loads((tmp_path / "run" / "dense" / "summary.json").read_text())
    sd = json.loads((tmp_path / "run" / "sdsnn-reference" / "summary.json").read_text())
    assert dense["config"]["network"]["layers"][-1]["size"] == classes
    assert dense["config"]["network"]["layers"][0]["type"] == "conv2d"
    pruned = sd["final"]["neurons_pruned"]
    assert pruned["conv2"] > 0 and pruned["fc3"] > 0  # filter pruning and neuron pruning both ran
    assert pruned["conv1"] == 0
    assert sd["final"]["compression"] > 0
