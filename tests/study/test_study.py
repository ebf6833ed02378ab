"""Studies as data: loading (protocols, claims validated before anything trains) and the runner
(results.json's format, the re-evaluation a protocol declares, one event stream)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aelab.cli import main
from aelab.errors import ConfigError
from aelab.study import (
    BASE_PROTOCOL,
    CLAIM_KINDS,
    RESULTS_FORMAT,
    RESULTS_VERSION,
    ClaimError,
    load_study,
    parse_claim,
    parse_metric_path,
    protocol_name,
    run_study,
    shipped_studies,
    study_from_dict,
)
from aelab.study.claims import ABSOLUTE_KINDS

TINY = """
title = "tiny"
[defaults]
data.dataset = "synthetic"
data.limit = 256
data.test_limit = 64
data.scaling = "minmax"
data.scaler_fit = "per_split"
train.epochs = 1
train.batch_size = 64
[protocols.fitted]
description = "the test split scaled with the training split's statistics"
reevaluate = true
data.scaler_fit = "train"
[protocols.longer]
train.epochs = 2
[baselines.a]
model.encoder = ["8:relu"]
[baselines.u]
model.encoder = ["8:relu"]
data.scaling = "unit"
[variants.b]
base = "a"
model.encoder = ["8:sigmoid"]
[[questions]]
id = "1"
baseline = "a"
variant = "b"
claims = [CLAIMS]
"""

GOOD_CLAIM = '{ text = "lower", kind = "less_than_baseline", params = { metric = "final.val_loss" } }'


def tiny(tmp_path: Path, claims: str = GOOD_CLAIM, extra: str = "") -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(TINY.replace("CLAIMS", claims) + extra)
    return p


# -- protocols ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [None, "base", "seed"])
def test_the_base_protocol_is_base_and_seed_is_its_earlier_name(name):
    study = load_study("exercise12", protocol=name)
    assert protocol_name(name) == BASE_PROTOCOL == study.protocol == "base"
    assert {c.data.scaler_fit for c in study.runs.values()} == {"per_split"}
    protocol, configs = study.reevaluate  # declared in exercise12.toml, not in code
    assert protocol.name == "corrected" and protocol.reevaluate
    assert {c.data.scaler_fit for c in configs.values()} == {"train"} and set(configs) == set(study.runs)


def test_a_named_protocol_applies_its_settings_and_reevaluates_nothing():
    study = load_study("exercise12", protocol="corrected")
    assert study.protocol == "corrected" and study.reevaluate is None
    assert {c.data.scaler_fit for c in study.runs.values()} == {"train"}


def test_every_shipped_study_loads_with_its_claims_parsed():
    for name in shipped_studies():
        study = load_study(name, quick=True)
        for q in study.questions:
            for c in q.claims:
                assert c.kind in CLAIM_KINDS and parse_claim(c.to_dict()) == c


@pytest.mark.parametrize("extra, match", [
    ("[protocols.seed]\ndata.scaler_fit = \"train\"\n", "names the base protocol"),
    ("[protocols.base]\ndata.scaler_fit = \"train\"\n", "names the base protocol"),
    ("[protocols.again]\nreevaluate = true\ndata.scaler_fit = \"train\"\n", "at most one protocol"),
    ("[protocols.bad]\nreevaluate = true\ntrain.epochs = 3\n", "may change only data"),
    ("[protocols.bad]\nreevaluate = \"yes\"\n", "true or false"),
    ("[protocols.bad]\ndata.scaler_fit = \"sometimes\"\n", "scaler_fit"),
])
def test_bad_protocols_are_one_line(tmp_path, extra, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_study(str(tiny(tmp_path, extra=extra)))  # every protocol is checked, chosen or not
    assert "\n" not in str(info.value)


def test_an_unknown_protocol_names_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown protocol 'nope'; allowed: base, fitted, longer"):
        load_study(str(tiny(tmp_path)), protocol="nope")


# -- claims ------------------------------------------------------------------------------------------
BAD_CLAIMS = [
    ('{ text = "x", kind = "vibes", params = {} }', "unknown claim kind 'vibes'"),
    ('{ text = "x", kind = "ratio_at_least", params = { metric = "final.val_loss" } }', "missing min"),
    ('{ text = "x", kind = "above", params = { metric = "metrics.ssim", value = "high" } }', "'value' must be a number"),
    ('{ text = "x", kind = "plateau", params = { history = "loss", after = 2.5, max_rel_drop = 0.1 } }',
     "'after' must be an integer"),
    ('{ text = "x", kind = "above", params = { metric = "ssim", value = 0.5 } }', "unknown metric path 'ssim'"),
    ('{ text = "x", kind = "below", params = { metric = "metrics.extra.ssim", value = 0.5 } }', "unknown metric path"),
    ('{ text = "x", kind = "ratio_between", params = { metric = "final.loss", min = 2, max = 1 } }', "above max"),
    ('{ text = "x", kind = "ratio_at_least", params = { metric = "final.loss", min = 2, of = "baseline" } }',
     "only works with"),
    # names a family declares: the runs here are plain autoencoders
    ('{ text = "x", kind = "below", params = { metric = "metrics.family.elbo", value = 1 } }',
     "run 'b' (ae) has no diagnostic 'elbo'; its diagnostics: none"),
    ('{ text = "x", kind = "less_than_baseline", params = { metric = "final.val_terms.kl" } }',
     "run 'a' (ae) has no loss term 'kl'; its terms: reconstruction, activity_l1"),
    ('{ text = "x", kind = "plateau", params = { history = "terms.kl", after = 2, max_rel_drop = 0.1 } }',
     "no loss term 'kl'"),
]


@pytest.mark.parametrize("claim, match", BAD_CLAIMS)
def test_a_bad_claim_is_refused_when_the_study_loads(tmp_path, claim, match):
    with pytest.raises(ConfigError, match=re.escape(match)) as info:
        load_study(str(tiny(tmp_path, claim)))
    msg = str(info.value)
    assert "question 1: claim 1:" in msg and "\n" not in msg


@pytest.mark.parametrize("claim, match", BAD_CLAIMS[:5])
def test_aelab_study_refuses_a_bad_claim_before_training(tmp_path, monkeypatch, capsys, claim, match):
    monkeypatch.chdir(tmp_path)
    path = tiny(tmp_path, claim)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["study", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aelab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, not even the output folder


def test_claims_may_name_the_terms_and_diagnostics_their_runs_have(tmp_path):
    ok = ('{ text = "x", kind = "less_than_baseline", params = { metric = "final.terms.activity_l1" } }, '
          '{ text = "y", kind = "below", params = { metric = "final.val_terms.reconstruction", value = 1 } }')
    assert len(load_study(str(tiny(tmp_path, ok))).questions[0].claims) == 2
    assert any(getattr(c.params, "metric", "") == "metrics.family.active_units" for name in shipped_studies()
               for q in load_study(name).questions for c in q.claims)


def test_claims_parse_to_typed_parameters():
    c = parse_claim({"text": "t", "kind": "value_near",
                     "params": {"metric": "final.val_loss", "value": 1, "rel_tol": 0.2, "of": "baseline"}})
    assert c.params.value == 1.0 and c.params.of == "baseline" and c.to_dict()["params"]["value"] == 1
    assert set(ABSOLUTE_KINDS) == {"value_near", "below", "above", "plateau"}
    assert parse_metric_path("history.loss[-1]") == ("history", "loss", None, -1)
    assert parse_metric_path("final.terms.kl") == ("final", "terms.kl", None, None)
    assert parse_metric_path("metrics.latent.probe_accuracy") == ("metrics", "probe_accuracy", "latent", None)
    with pytest.raises(ClaimError):
        parse_metric_path("loss")
    assert isinstance(ClaimError("x"), ValueError)  # the report's judging catches ValueError


# -- the runner --------------------------------------------------------------------------------------
def test_a_study_writes_a_versioned_results_file_reevaluates_as_declared_and_streams_events(tmp_path):
    events = []
    study = load_study(str(tiny(tmp_path)))
    out = tmp_path / "out"
    res = run_study(study, out, device="cpu", progress=False, workers=1, on_event=events.append)
    saved = json.loads((out / "results.json").read_text())
    assert saved["format"] == RESULTS_FORMAT and saved["version"] == RESULTS_VERSION == res["version"]
    assert saved["protocol"] == "base" and not (out / "report.html").exists()
    block = saved["corrected"]
    assert block["protocol"] == "fitted" and block["description"].startswith("the test split scaled")
    # "u" scales by the data's maximum: fitting the scaler elsewhere changes nothing, so it is not re-evaluated
    assert set(block["runs"]) == {"a", "b"}
    assert all(len(r["history"]["val_loss"]) == 1 for r in block["runs"].values())
    assert saved["questions"][0]["claims"] == [{"text": "lower", "kind": "less_than_baseline",
                                                "params": {"metric": "final.val_loss"}}]
    names = {type(e).__name__ for e in events}
    assert {"RunStarted", "EpochEnded", "RunFinished", "Progress"} <= names
    assert {e.run for e in events if type(e).__name__ == "RunFinished"} == {"a", "u", "b"}


def test_a_named_protocol_trains_its_own_runs_and_the_report_is_the_callers_step(tmp_path):
    study = load_study(str(tiny(tmp_path)), protocol="longer")
    seen = []
    res = run_study(study, tmp_path / "out", device="cpu", progress=False, workers=1, report=seen.append)
    assert seen == [tmp_path / "out"]
    assert res["protocol"] == "longer" and "corrected" not in res
    assert {len(r["history"]["loss"]) for r in res["runs"].values()} == {2}
    with pytest.raises(TypeError, match="build_report"):
        run_study(study, tmp_path / "out", device="cpu", progress=False, report=True)


def test_study_from_dict_takes_protocol_names_as_load_study_does():
    raw = {"defaults": {"data": {"dataset": "synthetic"}}, "baselines": {"a": {}}}
    assert study_from_dict(raw, protocol="seed").protocol == "base"


def test_protocol_seed_on_the_command_line_is_the_base_protocol(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tiny(tmp_path)
    assert main(["study", str(path), "--protocol", "seed", "--no-report", "-q", "--workers", "1"]) == 0
    assert main(["study", str(path), "--protocol", "longer", "--no-report", "-q", "--workers", "1"]) == 0
    made = sorted(p.name for p in (tmp_path / "studies-out").iterdir())
    assert made == ["tiny", "tiny-longer"]  # the base protocol names no folder of its own
    saved = json.loads((tmp_path / "studies-out" / "tiny" / "results.json").read_text())
    assert saved["protocol"] == "base" and saved["corrected"]["protocol"] == "fitted"
