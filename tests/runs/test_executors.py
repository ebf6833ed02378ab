"""Executors without Ray: the scheduling rules every executor shares, the registry, the files a Ray
task sends back (placed by the driver alone, atomically, DONE last), and the CLI's backend options."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from aelab import runs
from conftest import make_cfg
from aelab.runs.executors import EXECUTORS, Executor, open_executor
from aelab.runs.executors.local import LocalExecutor
from aelab.runs.executors.ray import RayExecutor, _place, check_address, collect_files
from aelab.runs.executors.schedule import (SPLIT_PENALTY, balance_groups, lpt_makespan, plan_workers,
                                           threads_per_worker)
from aelab.cli import main
from aelab.errors import AelabError

EXE = [sys.executable, "-m", "aelab.cli"]


def test_runs_keeps_the_names_callers_import():
    assert runs.plan_workers is plan_workers and runs.balance_groups is balance_groups
    assert runs.lpt_makespan is lpt_makespan and runs.SPLIT_PENALTY == SPLIT_PENALTY


def test_lpt_makespan_by_hand():
    # 5, 4, 3, 3 on 2 workers: 5 | 4 → 5 | 7 (3 on the 4) → 8 | 7 (3 on the 5): 8
    assert lpt_makespan([3, 5, 3, 4], 2) == 8
    assert lpt_makespan([3, 5, 3, 4], 1) == 15
    assert lpt_makespan([3, 5, 3, 4], 4) == 5


def test_balance_groups_splits_one_big_group_for_two_workers_and_leaves_small_ones():
    cost = lambda g: 10.0 * len(g)  # noqa: E731
    # one group of 8 on 2 workers: halves (4 and 4, each 40 × 1.1 = 44) beat 80
    assert sorted(map(len, balance_groups([list(range(8))], cost, 2))) == [4, 4]
    # two equal groups on 2 workers: nothing to gain
    assert balance_groups([[0, 1], [2, 3]], cost, 2) == [[0, 1], [2, 3]]
    # one worker: splitting only costs
    assert balance_groups([list(range(8))], cost, 1) == [list(range(8))]


def test_plan_workers_and_threads():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert plan_workers(None, cpu, 1) == 1
    assert plan_workers(None, cpu, 10, cpus=4) == 4
    assert plan_workers(None, cpu, 3, cpus=16) == 3
    assert plan_workers(None, gpu, 10, cpus=16) == 1
    assert plan_workers(0, cpu, 5) == 1
    assert threads_per_worker(2, 2) == 1 and threads_per_worker(16, 3) == 5 and threads_per_worker(2, 8) == 1


@pytest.mark.parametrize("address", ["auto", "10.0.0.5:6379", "ray://head.example:10001", "localhost:6379"])
def test_ray_addresses_that_are_accepted(address):
    assert check_address(address) == address


@pytest.mark.parametrize("address", ["ray://head", "head:", ":6379", "head:99999", "http//x"])
def test_a_malformed_ray_address_is_one_line(address):
    with pytest.raises(AelabError, match="is not a Ray address; use auto"):
        check_address(address)


def test_open_executor_refuses_an_address_for_the_local_backend_and_unknown_names():
    with pytest.raises(AelabError, match="--address names a Ray cluster"):
        with open_executor("local", address="auto"):
            pass
    with pytest.raises(AelabError, match="unknown backend 'spark'"):
        with open_executor("spark"):
            pass
    with open_executor("local") as be:
        assert isinstance(be, LocalExecutor)
        with open_executor(be) as same:  # an opened backend passes through
            assert same is be


def test_every_registered_executor_follows_the_protocol_and_a_new_one_is_used_by_name(tmp_path, monkeypatch):
    assert set(EXECUTORS) >= {"local", "ray"}
    assert isinstance(LocalExecutor(), Executor)
    assert all(hasattr(cls, m) for cls in (LocalExecutor, RayExecutor)
               for m in ("name", "resolve_device", "plan_workers", "train_groups", "close"))

    class Counting(LocalExecutor):
        name = "counting"
        groups = 0
        closed = False

        def train_groups(self, groups, *a, **k):
            Counting.groups += len(groups)
            return super().train_groups(groups, *a, **k)

        def close(self):
            Counting.closed = True

    monkeypatch.setitem(EXECUTORS, "counting", Counting)
    cfg = make_cfg(**{"data.limit": 200, "data.test_limit": 40, "train.epochs": 1})
    (res,) = runs.train_runs([cfg], [tmp_path / "r"], device="cpu", progress=False, backend="counting")
    assert Counting.groups == 1 and Counting.closed and (res.run_dir / "DONE").exists()


def test_a_stop_always_ends_as_an_interruption_naming_the_error_that_followed_it(tmp_path, monkeypatch):
    """A stop during training ends as Interrupted (what each run holds, so the CLI says how to
    resume) even when an executor then fails, or when every run finished anyway."""
    from aelab.runs import Interrupted, RunFinished, Stop
    from aelab.runs.executors.ray import WorkerError

    stop = Stop()

    class FailsAfterTheStop(LocalExecutor):
        def train_groups(self, groups, job, data, stop_, n_workers, emit):
            stop_.set("SIGINT")
            raise WorkerError("the Ray task training x on node y died (lost)")

    monkeypatch.setitem(EXECUTORS, "fails", FailsAfterTheStop)
    cfg = make_cfg(**{"data.limit": 200, "data.test_limit": 40, "train.epochs": 1})
    with pytest.raises(Interrupted, match=r"^SIGINT: training stopped; 1 run not started; after the stop: the Ray "
                                          r"task training x on node y died \(lost\)$"):
        runs.train_runs([cfg], [tmp_path / "a"], device="cpu", progress=False, backend="fails", stop=stop)
    assert not (tmp_path / "a").exists()

    stop = Stop()  # a stop that comes while the last run finishes: the run is kept, the call still stops
    with pytest.raises(Interrupted, match=r"^stop requested: training stopped; 1 finished$"):
        runs.train_runs([cfg], [tmp_path / "b"], device="cpu", progress=False, stop=stop,
                        on_event=lambda ev: isinstance(ev, RunFinished) and stop.set())
    assert (tmp_path / "b" / "DONE").exists()
    (res,) = runs.train_runs([cfg], [tmp_path / "b"], device="cpu", progress=False)
    assert res.cached


def test_files_a_task_sends_back_are_placed_whole_done_last_and_mirror_its_checkpoint(tmp_path, monkeypatch):
    task_dir = tmp_path / "task" / "0-run"
    (task_dir / "checkpoint").mkdir(parents=True)
    (task_dir / "config.json").write_text("{}")
    (task_dir / "checkpoint" / "state.safetensors").write_bytes(b"tensors")
    (task_dir / "checkpoint" / "state.json").write_text('{"epoch": 1}')
    (task_dir / ".aelab.lock").write_text("123")
    (task_dir / ".config.json.abc.tmp").write_text("half")
    files = collect_files(task_dir)
    assert sorted(files) == ["checkpoint/state.json", "checkpoint/state.safetensors", "config.json"]

    order = []
    import aelab.runs.executors.ray as ray_executor

    real = ray_executor.write_bytes
    monkeypatch.setattr(ray_executor, "write_bytes", lambda p, b: (order.append(p.relative_to(rd).as_posix()), real(p, b)))
    rd = tmp_path / "driver" / "run"
    rd.mkdir(parents=True)
    _place(rd, files)
    # the tensors before the state.json that names their hash
    assert order == ["checkpoint/state.safetensors", "config.json", "checkpoint/state.json"]
    assert (rd / "checkpoint" / "state.json").read_text() == '{"epoch": 1}'

    # the run finished on the task: its files, DONE last, and the checkpoint here is dropped
    order.clear()
    done = {"config.json": b"{}", "weights.safetensors": b"w", "history.json": b"[]", "DONE": b"ok\n",
            "sub/codes.npz": b"c"}
    _place(rd, done)
    assert order[-1] == "DONE" and set(order) == set(done)
    assert not (rd / "checkpoint").exists() and (rd / "sub" / "codes.npz").read_bytes() == b"c"
    assert not [p for p in rd.rglob(".*tmp")]


def test_a_task_file_outside_its_run_directory_is_refused(tmp_path):
    rd = tmp_path / "run"
    rd.mkdir()
    with pytest.raises(AelabError, match="outside its run directory"):
        _place(rd, {"../evil": b"x"})
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--address", "auto"], "--address is for the Ray backend; add --backend ray"),
    (["--shared-fs"], "--shared-fs is for the Ray backend"),
    (["--backend", "ray", "--address", "head"], "--address 'head' is not a Ray address"),
])
def test_backend_options_that_cannot_work_are_one_line_and_write_nothing(tmp_path, capsys, extra, needle):
    out = tmp_path / "out"
    code = main(["study", "exercise12", "--quick", "--set", "data.dataset=synthetic", "--no-report", "-q",
                 "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not out.exists()


def test_backend_ray_without_ray_installed_says_how_to_install_it(tmp_path):
    # a Python where `import ray` fails (None in sys.modules), whether or not Ray is installed here
    code = ("import sys; sys.modules['ray'] = None; from aelab.cli import main; "
            f"sys.exit(main(['sweep', '--param', 'train.lr', '--values', '0.001,0.002', '--backend', 'ray', "
            f"'--dataset', 'synthetic', '--limit', '256', '--epochs', '1', '-q', '--out', {str(tmp_path / 'o')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("aelab: error: --backend ray needs Ray, which is not installed; install it with: "
                                "pip install 'aelab[ray]'")
    assert not (tmp_path / "o").exists()


def test_study_and_sweep_help_name_the_backends():
    for cmd in ("study", "sweep"):
        r = subprocess.run([*EXE, cmd, "--help"], capture_output=True, text=True, timeout=60)
        assert "--backend {local,ray}" in r.stdout and "--address ADDR" in r.stdout and "--shared-fs" in r.stdout
