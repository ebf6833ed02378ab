"""benchmarks/gpu.py in its smoke mode (CPU, synthetic data): it measures, and it replaces only its
own block of the results file."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root holds benchmarks/

from benchmarks import gpu  # noqa: E402


def test_the_smoke_mode_measures_and_replaces_only_its_block(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AELAB_CUDA_GRAPHS", raising=False)
    md = tmp_path / "RESULTS.md"
    md.write_text(f"# Benchmarks\n\nkept above\n\n{gpu.BEGIN}\nan old GPU block\n{gpu.END}\n\nkept below\n")
    assert gpu.main(["--device", "cpu", "--tiny", "--parts", "undercomplete,sweep", "--results", str(md)]) == 0
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nkept above\n\n") and text.endswith("\n\nkept below\n")
    assert "an old GPU block" not in text and text.count(gpu.BEGIN) == 1 and text.count(gpu.END) == 1
    assert "--tiny: synthetic data, a smoke test, not a measurement" in text and "(cpu)" in text
    s_per_epoch = float(re.search(r"\| lab undercomplete AE, batch 64, s/epoch \| ([0-9.]+) \| ≤ 0\.05 \| – \(not a GPU\) \|",
                                  text).group(1))
    assert 0 < s_per_epoch < 60
    eager = float(re.search(r"\| the same, `AELAB_CUDA_GRAPHS=0`, s/epoch \| ([0-9.]+) \| \| \|", text).group(1))
    assert 0 < eager < 60
    # which stepper trained each figure; on a CPU the switch changes nothing: the C-kernel stacked path
    assert ("Steppers (run.json): lab undercomplete AE: StackedDenseStepper; with `AELAB_CUDA_GRAPHS=0`: "
            "StackedDenseStepper; sweep: StackedDenseStepper.") in text
    ratio = re.search(r"\| 4-value sweep ÷ one run \(([0-9.]+) s ÷ ([0-9.]+) s\) \| ([0-9.]+) \|", text)
    many, one, r = map(float, ratio.groups())
    assert (many - 0.05) / (one + 0.05) - 0.005 <= r <= (many + 0.05) / max(one - 0.05, 1e-3) + 0.005  # shown to 0.1 s
    assert "exercise12 study" not in text  # not asked for, not shown
    assert gpu.BEGIN in capsys.readouterr().out
    assert "AELAB_CUDA_GRAPHS" not in os.environ  # the switch was set for the one measurement only


def test_merge_appends_a_block_to_a_file_without_one():
    assert gpu.merge("# B\n", f"{gpu.BEGIN}\nx\n{gpu.END}") == f"# B\n\n{gpu.BEGIN}\nx\n{gpu.END}\n"


def test_an_unknown_part_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        gpu.main(["--device", "cpu", "--tiny", "--parts", "undercomplete,warp"])
    assert exc.value.code == 2 and "--parts: unknown warp" in capsys.readouterr().err
