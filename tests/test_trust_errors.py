"""Trust II: the machine's limits and odd input are one line, never a traceback or a hang — a full
disk (nothing half-written), a model too large for memory (refused with the figure before anything
is allocated), input nested past the recursion limit, text that is not UTF-8, a looping link or a
system directory as the output, a range of sweep values with a missing part."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from aelab import _atomic
from aelab.cli import main
from aelab.config import RunConfig
from aelab.errors import AelabError, ConfigError

EXE = [sys.executable, "-m", "aelab.cli"]
SYN = ["--dataset", "synthetic", "--limit", "400", "--test-limit", "80"]
TRAIN = ["train", *SYN, "--epochs", "1", "-q"]
STUDY = ["study", "--quick", "--set", "data.dataset=synthetic", "-q"]
SWEEP = ["sweep", "--quick", "--dataset", "synthetic", "--param", "train.epochs", "--values", "1", "-q"]


def one_line(err: str) -> str:
    assert err.startswith("aelab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def no_temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if ".tmp" in p.name or _atomic.temp_target(p.name)]


# -- a full disk ---------------------------------------------------------------------------------------------
# A real one where the tests may mount a small tmpfs (root); elsewhere a stand-in that makes every artifact
# write under the directory fail as a full disk does (half the bytes written, then ENOSPC; safetensors'
# writer with its own error and message).
STANDIN = textwrap.dedent("""
    import errno, os, pathlib, sys


    def install(full):
        full = os.path.realpath(full)

        def on_full(p):
            return os.path.realpath(os.path.dirname(os.path.abspath(p))).startswith(full)

        real_write_bytes = pathlib.Path.write_bytes

        def write_bytes(self, data):
            if on_full(self):
                real_write_bytes(self, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write_bytes(self, data)

        pathlib.Path.write_bytes = write_bytes
        import safetensors
        import safetensors.torch

        real_save_file = safetensors.torch.save_file

        def save_file(tensors, filename, metadata=None):
            if on_full(filename):
                with open(filename, "wb") as fh:
                    fh.write(b"half")
                raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device "
                                                  "(os error 28)")
            return real_save_file(tensors, filename, metadata=metadata)

        safetensors.torch.save_file = save_file


    if __name__ == "__main__":
        install(sys.argv[1])
        from aelab.cli import main

        sys.exit(main(sys.argv[2:]))
""")


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k"):
    """A small tmpfs mounted at ``path`` (pytest.skip where mounting is not permitted)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the stand-in variant covers this")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); the stand-in variant covers this")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path, leave: int = 0) -> None:
    """Fill ``disk`` up, then free ``leave`` bytes."""
    with open(disk / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while fh.write(b"\0" * 4096):
            pass
    if leave:
        os.truncate(disk / "filler", max(os.path.getsize(disk / "filler") - leave, 0))


@contextlib.contextmanager
def full_disk(kind: str, tmp_path: Path, leave: int = 0):
    """(directory on a full disk, command prefix that runs aelab's CLI with it full)."""
    disk = tmp_path / "disk"
    if kind == "tmpfs":
        with tmpfs(disk):
            fill(disk, leave)
            yield disk, EXE
    else:
        disk.mkdir()
        script = tmp_path / "standin.py"
        script.write_text(STANDIN)
        yield disk, [sys.executable, str(script), str(disk)]


@pytest.mark.parametrize("kind", ["tmpfs", "stand-in"])
@pytest.mark.parametrize("leave", [0, 16384], ids=["full", "room-for-json"])
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, kind, leave):
    """The CLI in a subprocess: exit 2, one line naming the file and what to do; no temporary file and
    no half-written artifact left (a real tmpfs when it can be mounted: with no room at all the first
    JSON fails, with a little the checkpoint's safetensors file does)."""
    if kind == "stand-in" and leave:
        pytest.skip("the stand-in fails every write; the room left only matters on a real disk")
    with full_disk(kind, tmp_path, leave) as (disk, cmd):
        before = sorted(p.name for p in disk.iterdir())
        for sub in ([*TRAIN, "--out", str(disk / "run")], [*STUDY, "--out", str(disk / "study")]):
            r = subprocess.run([*cmd, *sub], capture_output=True, text=True, timeout=300)
            assert r.returncode == 2, r.stderr
            err = one_line(r.stderr)
            assert "no space left on device" in err and "free space or choose another --out" in err, err
            assert str(disk) in err  # names the file
            assert not no_temp_files(disk), no_temp_files(disk)
            for name in ("weights.safetensors", "run.json", "DONE", "results.json", "state.safetensors"):
                assert not list(disk.rglob(name)), list(disk.rglob(name))
            if not leave:  # nothing saved: no empty run or output folders left behind either
                assert {p.name for p in disk.iterdir()} <= set(before), sorted(disk.rglob("*"))
        assert sorted(p.name for p in disk.iterdir() if p.is_file()) == [n for n in before if (disk / n).is_file()]


@pytest.fixture(params=["tmpfs", "stand-in"])
def disk_full_writes(request, tmp_path, monkeypatch):
    """A directory whose artifact writes find the disk full, in this process."""
    if request.param == "tmpfs":
        with tmpfs(tmp_path / "disk"):
            (tmp_path / "disk" / "old").write_bytes(b"old content")
            fill(tmp_path / "disk")
            yield tmp_path / "disk"
        return
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "old").write_bytes(b"old content")
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", safetensors.torch.save_file)  # put back after the test
    monkeypatch.setattr(Path, "write_bytes", Path.write_bytes)
    ns: dict = {"__name__": "standin"}
    exec(STANDIN, ns)
    ns["install"](disk)
    yield disk


@pytest.mark.parametrize("writer", ["json", "npz", "png", "weights", "checkpoint"])
def test_a_write_on_a_full_disk_keeps_the_old_file_and_removes_its_temporary(disk_full_writes, writer, request):
    if writer == "npz" and "stand-in" in request.node.name:
        pytest.skip("np.savez writes through zipfile, which the stand-in does not fail; the tmpfs variant covers it")
    from aelab import runs
    from aelab.engine.loop import History, LoopState
    from aelab.models import build_model

    target = disk_full_writes / "old"
    cfg = RunConfig().with_overrides({"model.encoder": "256:relu"})
    model = build_model(cfg.model, torch.Generator().manual_seed(0))
    with pytest.raises(_atomic.DiskFullError) as got:
        if writer == "json":
            _atomic.write_json(target, {"x": list(range(20000))})
        elif writer == "npz":
            with _atomic.atomic_path(target, suffix=".npz") as tmp:
                np.savez(tmp, x=np.zeros(100000, np.float32))
        elif writer == "png":
            runs.write_recon_png(target, {"original": np.random.rand(10, 784), "recon": np.random.rand(10, 784)},
                                 shape=(1, 28, 28))
        elif writer == "weights":
            runs.save_weights(target, model)
        else:
            st = LoopState(epoch=0, batch=0, elapsed=0.0, histories=[History()])
            runs.save_checkpoint(runs.RunSpec.of(cfg, disk_full_writes), dict(model.state_dict()), st, 0)
    msg = str(got.value)
    assert "no space left on device" in msg and "free space or choose another --out" in msg
    assert "\n" not in msg
    if writer != "checkpoint":
        assert str(target) in msg and target.read_bytes() == b"old content"
    assert not no_temp_files(disk_full_writes)


def test_disk_full_is_recognised_however_the_writer_reports_it():
    from safetensors import SafetensorError

    assert _atomic.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert _atomic.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert _atomic.is_disk_full(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
    try:
        try:
            raise OSError(errno.ENOSPC, "x")
        except OSError as inner:
            raise ValueError("zip writer failed") from inner
    except ValueError as outer:
        assert _atomic.is_disk_full(outer)
    assert not _atomic.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not _atomic.is_disk_full(ValueError("os error 2"))


# -- a model too large for memory ---------------------------------------------------------------------------
def test_a_layer_too_large_for_memory_is_refused_with_the_figure(tmp_path, capsys):
    out = tmp_path / "huge"
    assert main([*TRAIN, "--encoder", "1000000000:relu", "--out", str(out)]) == 2
    err = one_line(capsys.readouterr().err)
    assert "needs about" in err and " GB of memory" in err and "available" in err, err
    # 1.569e12 parameters × 4 float32 numbers (25,104 GB) + an evaluation chunk of 1024 samples × ~1e9 values (4,096 GB)
    assert "29,200 GB" in err
    assert not out.exists()


def test_the_estimate_is_compared_with_what_the_device_has(tmp_path, capsys, monkeypatch):
    from aelab.engine import memory

    monkeypatch.setattr(memory, "available_bytes", lambda dev: (10**6, "this machine has 1 MB available"))
    assert main([*TRAIN, "--out", str(tmp_path / "r")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "needs about" in err and "this machine has 1 MB available" in err and "--batch-size" in err
    assert not (tmp_path / "r").exists()
    monkeypatch.undo()
    assert main([*TRAIN, "--out", str(tmp_path / "r")]) == 0  # the same model fits this machine


def test_every_family_counts_its_parameters_as_built():
    from aelab.models import FAMILIES, build_model
    from aelab.presets import load_preset, preset_names

    cfgs = [RunConfig().with_overrides({"model.family": f}).model for f in FAMILIES]
    cfgs += [load_preset(n).model for n in preset_names()]
    assert any(not c.is_dense() for c in cfgs)  # a convolutional model among them
    for c in cfgs:
        model = build_model(c, torch.Generator().manual_seed(0))
        assert c.parameter_count() == sum(p.numel() for p in model.parameters()), c.family


@pytest.mark.parametrize("raise_", [
    lambda: (_ for _ in ()).throw(RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
        "allocate 6276000003136 bytes. Error code 12 (Cannot allocate memory)")),
    lambda: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")),
    lambda: (_ for _ in ()).throw(MemoryError()),
], ids=["cpu-allocator", "cuda", "python"])
def test_an_allocation_that_fails_anyway_is_one_line(tmp_path, capsys, monkeypatch, raise_):
    from aelab.runs import train

    monkeypatch.setattr(train, "_train_todo", lambda *a, **k: raise_())
    assert main([*TRAIN, "--out", str(tmp_path / "r")]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("aelab: error: out of memory") and "--batch-size" in err
    assert not (tmp_path / "r").exists()


def test_other_runtime_errors_still_show_their_traceback(tmp_path, monkeypatch):
    from aelab.runs import train

    monkeypatch.setattr(train, "_train_todo", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        main([*TRAIN, "--out", str(tmp_path / "r")])


# -- input nested too deeply, text that is not UTF-8 --------------------------------------------------------
DEEP = {"array": "a = " + "[" * 5000 + "]" * 5000 + "\n",
        "inline table": "a = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n",
        "dotted key": "a" + ".a" * 5000 + " = 1\n"}


@pytest.mark.parametrize("shape", DEEP)
@pytest.mark.parametrize("command", ["config", "study"])
def test_a_toml_nested_5000_deep_is_one_line(tmp_path, capsys, shape, command):
    f = tmp_path / "deep.toml"
    f.write_text(DEEP[shape])
    argv = [*TRAIN, "--config", str(f)] if command == "config" else ["study", str(f), "-q"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = one_line(capsys.readouterr().err)
    assert str(f) in err and "deep" in err
    assert not (tmp_path / "o").exists()


def test_an_override_nested_5000_deep_is_one_line(tmp_path, capsys):
    assert main([*TRAIN, "--set", "model.encoder=" + "[" * 5000 + "]" * 5000, "--out", str(tmp_path / "o")]) == 2
    assert "deep" in one_line(capsys.readouterr().err)


def test_a_json_nested_too_deeply_is_one_line(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(AelabError, match="nested too deeply") as got:
        _atomic.read_json(f, "write it again")
    assert str(f) in str(got.value)


@pytest.mark.parametrize("command", ["config", "study"])
def test_a_toml_that_is_not_utf8_is_one_line_naming_it(tmp_path, capsys, command):
    f = tmp_path / "latin1.toml"
    f.write_bytes('title = "café"\n'.encode("latin-1"))
    argv = [*TRAIN, "--config", str(f)] if command == "config" else ["study", str(f), "-q"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = one_line(capsys.readouterr().err)
    assert str(f) in err and "not UTF-8" in err and "line 1" in err


def test_a_csv_table_that_is_not_utf8_is_one_line_naming_it(tmp_path, capsys):
    f = tmp_path / "t.csv"
    f.write_bytes(("température,b\n" + "\n".join(f"{i},{i * 2}" for i in range(50))).encode("latin-1"))
    assert main(["train", "--dataset", str(f), "--epochs", "1", "-q", "--out", str(tmp_path / "o")]) == 2
    err = one_line(capsys.readouterr().err)
    assert str(f) in err and "UTF-8" in err


# -- output paths that cannot be ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", [TRAIN, STUDY, SWEEP], ids=["train", "study", "sweep"])
@pytest.mark.parametrize("below", ["", "sub"])
def test_a_symlink_loop_as_out_is_one_line(tmp_path, capsys, command, below):
    loop = tmp_path / "loop"
    loop.symlink_to("loop")  # ln -s loop loop
    out = loop / below if below else loop
    assert main([*command, "--out", str(out)]) == 2
    err = one_line(capsys.readouterr().err)
    assert "ELOOP: too many levels of symbolic links" in err and str(out) in err
    assert loop.is_symlink() and os.readlink(loop) == "loop"


def test_a_symlink_loop_as_latent_out_is_one_line(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    assert main(["latent", str(tmp_path / "no-run"), "--out", str(loop / "x")]) == 2
    assert "ELOOP" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", [TRAIN, STUDY, SWEEP], ids=["train", "study", "sweep"])
@pytest.mark.parametrize("where", ["/usr/share", "/usr/lib", "/etc", "/var/lib"])
def test_an_out_in_a_system_directory_is_refused_even_for_root(capsys, command, where):
    """As root every write there would succeed: the refusal is aelab's own, and nothing is created."""
    out = Path(where) / f"aelab-test-{os.getpid()}" / "run"
    try:
        assert main([*command, "--out", str(out)]) == 2
        err = one_line(capsys.readouterr().err)
        assert str(out) in err and "system directory" in err
        assert not out.parent.exists()
    finally:
        if out.parent.exists():  # pragma: no cover — only if the refusal failed, as root
            import shutil

            shutil.rmtree(out.parent)


def test_the_home_directory_and_user_scratch_are_not_system_directories(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", "/var/lib/ci-user")
    _atomic.check_out_path("/var/lib/ci-user/runs/x")  # a service account's home: allowed
    with pytest.raises(AelabError, match="system directory /var/lib"):
        _atomic.check_out_path("/var/lib/dpkg/x")
    _atomic.check_out_path("/dev/shm/aelab-x")
    _atomic.check_out_path(tmp_path / "fine")


# -- a sweep's range with a part missing --------------------------------------------------------------------
@pytest.mark.parametrize("values, missing", [("1e-6..1e-1", "no COUNT"), ("1e-6..1e-1:", "no COUNT"),
                                             ("..1e-1:6", "no LO"), ("1e-6..:6", "no HI"),
                                             ("1e-6..1e-1:1", "COUNT is 1"), ("0..1:3", "LO is 0")])
def test_a_sweep_range_names_the_missing_part(tmp_path, capsys, values, missing):
    assert main(["sweep", "--quick", "--dataset", "synthetic", "--param", "model.activity_l1", "--values", values,
                 "--out", str(tmp_path / "s"), "-q"]) == 2
    err = one_line(capsys.readouterr().err)
    assert missing in err, err
    assert not (tmp_path / "s").exists()


def test_config_errors_stay_config_errors():
    with pytest.raises(ConfigError):
        RunConfig.from_toml("/nonexistent/x.toml")
