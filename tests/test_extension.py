"""aelab extended from outside: a model family and a data source defined in this file alone, through
a study, to a trained run and a full report — with neither named anywhere in ``src/``.

This is the promise of the plug-in registries (``aelab.models.register_family``,
``aelab.data.register_source``): the engine, the run directories, the study runner and the report
look a family's and a source's knowledge up; none of them is edited to add one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from pydantic import Field

from aelab.data import SOURCES, register_source
from aelab.errors import ConfigError
from aelab.models import FAMILIES, Family, register_family
from aelab.models.ae import LayerAutoencoder
from aelab.models.base import ModelConfig
from aelab.report import build_report
from aelab.study import load_study, run_study

SRC = Path(__file__).resolve().parents[1] / "src"
FAMILY_NAME = "xt_codeclip"
SOURCE_NAME = "xt_stripes"


# -- the family: a plain AE plus a hinge on code values beyond ±1 ----------------------------------------
class ClipConfig(ModelConfig):
    """An autoencoder with ``gamma``·mean(relu(|h| − 1)²) on its code: code values beyond ±1 cost."""

    family: Literal["xt_codeclip"] = "xt_codeclip"
    input_shape: tuple[int, ...] = (1, 6, 6)
    encoder: tuple[Any, ...] = ("4:linear",)
    decoder: tuple[Any, ...] = ("36:sigmoid",)
    gamma: float = Field(default=0.5, ge=0.0)

    def term_names(self) -> tuple[str, ...]:
        return ("outside_box",)


class ClipAutoencoder(LayerAutoencoder):
    def extra_terms(self, x: torch.Tensor, code: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"outside_box": self.config.gamma * torch.relu(code.abs() - 1).pow(2).sum(dim=1).mean()}


@torch.no_grad()
def clip_diagnose(model, x, cfg, loss="bce") -> dict[str, Any]:
    return {"share_outside": float((model.encode(x).abs() > 1).double().mean())}


def clip_explain(b, v, who="the variant", other="the baseline"):
    share = v.get("metrics", {}).get("family", {}).get("share_outside")
    return f"{who} keeps {share:.0%} of its code values outside the box" if isinstance(share, float) else None


CLIP = Family(
    name=FAMILY_NAME, Config=ClipConfig, build=lambda cfg, generator=None: ClipAutoencoder(cfg, generator),
    terms={"outside_box": "γ·mean(relu(|h| − 1)²): what code values beyond ±1 cost (box penalty)."},
    term_labels={"outside_box": "box penalty"},
    diagnostics={"share_outside": "The share of code values outside [−1, 1] on the test split (box share)."},
    diagnose=clip_diagnose, explain=clip_explain, label="box-coded AE")


# -- the source: 6×6 images of one horizontal or vertical stripe, two classes ---------------------------
def stripes(data_cfg):
    rng = np.random.default_rng(7)

    def make(n):
        y = rng.integers(0, 2, n)
        x = np.zeros((n, 1, 6, 6), np.float32)
        pos = rng.integers(0, 6, n)
        for i in range(n):
            if y[i]:
                x[i, 0, :, pos[i]] = 1.0
            else:
                x[i, 0, pos[i], :] = 1.0
        return x + rng.uniform(0, 0.1, x.shape).astype(np.float32) * (x == 0), y

    xtr, ytr = make(240)
    xte, yte = make(60)
    return xtr, ytr, xte, yte


#: one claim, an inline table (TOML keeps an inline table on one line)
CLAIM = ('{ text = "the box penalty is reported as a loss term", kind = "above", '
         'params = { metric = "final.terms.outside_box", value = -1.0 } }')

STUDY = f"""
title = "Extended from outside"
description = "A family and a data source aelab does not ship."

[defaults]
data.dataset = "{SOURCE_NAME}"
train.batch_size = 32
train.epochs = 3
train.seed = 1

[baselines.plain]
model.family = "ae"
model.input_shape = [1, 6, 6]
model.encoder = ["4:linear"]
model.decoder = ["36:sigmoid"]

[baselines.boxed]
model.family = "{FAMILY_NAME}"
model.gamma = 1.0

[[questions]]
id = "box"
section = "Box"
question = "A penalty on code values beyond ±1: what does it cost the reconstruction?"
baseline = "plain"
variant = "boxed"
claims = [
  {CLAIM},
]
"""


@pytest.fixture(scope="module")
def registered():
    """Both plug-ins are registered for this module only."""
    register_family(CLIP)
    register_source(SOURCE_NAME, stripes, noun=("stripe", "stripes"), classes=("horizontal", "vertical"),
                    sample_shape=(1, 6, 6), value_range=(0.0, 1.1))
    yield
    del FAMILIES[FAMILY_NAME]
    del SOURCES[SOURCE_NAME]


def test_neither_plug_in_is_named_in_src():
    for path in SRC.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".toml", ".html", ".md", ".j2", ".txt", ".c"):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert FAMILY_NAME not in text and SOURCE_NAME not in text, path


def test_a_family_and_a_source_from_test_code_train_and_report(registered, tmp_path):
    (tmp_path / "ext.toml").write_text(STUDY, encoding="utf-8")
    study = load_study(str(tmp_path / "ext.toml"))
    out = tmp_path / "out"
    run_study(study, out, progress=False, workers=1, report=build_report)

    results = json.loads((out / "results.json").read_text())
    boxed = results["runs"]["boxed"]
    assert boxed["config"]["model"]["family"] == FAMILY_NAME
    assert boxed["config"]["data"]["dataset"] == SOURCE_NAME
    # the family's own term was trained and recorded, its own diagnostic measured
    hist = boxed["history"]
    assert len(hist["loss"]) == 3 and hist["loss"][-1] < hist["loss"][0]
    assert "outside_box" in hist["terms"]
    assert 0.0 <= boxed["metrics"]["family"]["share_outside"] <= 1.0
    # a finished run directory, loadable like any other
    run_dirs = [p for p in (out / "runs").iterdir() if (p / "DONE").exists()]
    assert len(run_dirs) == 2

    html = (out / "report.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    # the report uses the family's own words, looked up in its registry entry
    for text in (html, md):
        assert "box penalty" in text  # the term's label
        assert "box-coded AE" in text or "code values outside" in text  # its label or its diagnostic's doc
    assert "claim" in md.lower() and "confirmed" in md


def test_a_bad_claim_on_a_plug_in_study_is_refused_on_load(registered, tmp_path):
    bad = STUDY.replace('kind = "above"', 'kind = "aboveish"')
    (tmp_path / "bad.toml").write_text(bad, encoding="utf-8")
    with pytest.raises(ConfigError, match="question box: claim 1: unknown claim kind 'aboveish'") as err:
        load_study(str(tmp_path / "bad.toml"))
    assert "\n" not in str(err.value)
