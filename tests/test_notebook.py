"""examples/exercise12.ipynb: committed without outputs, and executed top to bottom with nbclient on the
smallest slice that still runs every cell (scikit-learn's 8×8 digits, 1 epoch, two noise factors, one
worker), in this venv's ``python3`` kernel. Every run, the sweep, the report and the code maps must
show themselves (their rich HTML), and no cell may fail."""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "exercise12.ipynb"
#: the whole execution's limit (a cell past it fails the test by name, never hangs it)
CELL_TIMEOUT_S = 240


def _parameters(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "the notebook has one parameter cell, tagged 'parameters'"
    return tagged[0]


def test_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for i, c in enumerate(code):
        assert c.outputs == [] and c.execution_count is None, f"code cell {i} was committed with outputs"
    names = [name for name in ("QUICK", "DATASET", "EPOCHS", "NOISE_VALUES", "WORKERS", "MAP_RUNS", "OUT")]
    src = nb.cells[_parameters(nb)].source
    assert all(f"{n} =" in src for n in names)


def test_in_notebook_only_inside_a_kernel(monkeypatch):
    from aelab.runs.progress import RunProgress, in_notebook

    assert not in_notebook() and not RunProgress().notebook  # pytest: no kernel

    class Shell:
        config: dict = {}

    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: Shell()
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert not in_notebook()  # a terminal IPython
    Shell.config = {"IPKernelApp": {}}
    assert in_notebook() and RunProgress().notebook and not RunProgress(enabled=False).notebook


def _html(output) -> str:
    return output.get("data", {}).get("text/html", "") if output.get("output_type") in ("display_data",
                                                                                          "execute_result") else ""


def test_notebook_runs_on_a_small_slice(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    i = _parameters(nb)
    nb.cells[i].source = (f"QUICK = True\nDATASET = 'digits'\nEPOCHS = 1\nNOISE_VALUES = [0.3, 0.6]\nWORKERS = 1\n"
                          "MAP_RUNS = ['q3_1_l1_x100']\n"
                          f"OUT = {str(tmp_path / 'runs')!r}\n")
    env_before = dict(os.environ)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute()
    took = time.perf_counter() - t0
    assert dict(os.environ) == env_before
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [_html(o) for o in outputs]
    runs = [h for h in html if h.startswith('<div class="aelab-display">') and "test-set diagnostics" in h]
    assert len(runs) >= 9, f"every trained run shows itself ({len(runs)} run displays)"
    assert any("Final numbers per value" in h for h in html), "the sweep shows itself"
    assert any(h.startswith('<div class="aelab-report">') for h in html), "the report shows itself"
    maps = [h for h in html if "its code space" in h]
    assert len(maps) == 1 and all("data:image/png;base64," in h for h in maps)
    # the printed comparisons and claims are there too
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "final val loss: lab_undercomplete" in text and "Reconstructions" in text
    # progress: tqdm's notebook bar (a widget), not the milestone lines a log gets
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) >= 9 and "steps (100 %)" not in text
    assert took < 240
