"""The CUDA-graph step (engine/graphs.py): its body, run eagerly on a CPU, trains to the stacked
path's bits; it resumes mid-epoch exactly; the loop's multi-step hook stops on time; the switch.

On a CPU ``GraphedDenseStepper`` runs the very body a GPU captures, without the capture. The
weights are compared bit for bit with :class:`StackedDenseStepper` (C kernels on a CPU): the
gradients and Keras' Adam are the same float operations in the same order. The reported loss
values are compared to a relative 1e-5: they are another summation order of the same float32
terms (one batched mean against the C kernels' per-model sums; measured ≤ 5e-7 here), while a
wrong batch, a missing penalty or a wrong row changes them by far more than 1e-3.

The tests marked ``cuda`` capture for real; they are skipped without a GPU (they have not run yet:
the path was written on machines without one).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from aelab.config import RunConfig
from aelab.engine import graphs, loop
from aelab.engine.graphs import GraphedDenseStepper, dense_stepper_class, wanted
from aelab.engine.loop import Hooks, Interrupted, LoopState, StopFlag, TrainData, fit
from aelab.engine.steppers import PlainStepper, StackedDenseStepper
from aelab.errors import ConfigError, TrainingError
from aelab.runs import DataCache, spec_of
from conftest import StopAfter

CPU = torch.device("cpu")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (captures a CUDA graph)")


def _cfg(**over) -> RunConfig:
    base = {"data.dataset": "synthetic", "data.limit": 640, "data.test_limit": 128, "train.epochs": 3}
    base.update(over)
    return RunConfig().with_overrides(base)


def _data(cfgs, dev=CPU):
    cache = DataCache()
    return [cache.train_data(c, dev) for c in cfgs]


def _make(cls, cfgs, dev=CPU, **kw):
    t = cfgs[0].train
    return cls([spec_of(c) for c in cfgs], t.lr, t.beta1, t.beta2, t.eps, dev, **kw)


def _fit(stepper, datas, cfg, **kw):
    t = cfg.train
    return fit(stepper, datas, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed, shuffle=t.shuffle,
               progress=False, **kw)


def _losses(st: LoopState) -> list[float]:
    return [v for h in st.histories for v in h.loss + h.val_loss + h.penalty + h.val_penalty]


def _close(a: list[float], b: list[float], rel: float = 1e-5) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert math.isclose(x, y, rel_tol=rel, abs_tol=1e-9), (a, b)


ONE = [{}]  # the lab undercomplete AE's shape: 784 → 32 relu → 784 sigmoid, BCE on the logits
THREE = [  # one stacked group: other activations, an L1 penalty, all three output kinds
    {"model.activity_l1": 0.01},
    {"model.encoder": ["32:sigmoid"], "model.decoder": ["784:relu"]},
    {"model.encoder": ["32:tanh"], "model.decoder": ["784:linear"], "train.loss": "mse"},
]
NOISY = [  # models with inputs of their own (noise redrawn each epoch) beside one on clean inputs
    {"data.noise_factor": 0.5, "data.noise_mode": "per_epoch", "model.activity_l1": 1e-3},
    {},
    {"model.encoder": ["32:elu"], "model.decoder": ["784:softplus"], "train.loss": "mse"},
]


@pytest.mark.parametrize("group", [ONE, THREE, NOISY], ids=["M1", "M3-mixed", "M3-own-inputs"])
@pytest.mark.parametrize("batch, shuffle", [(64, True), (100, True), (100, False)],
                         ids=["full-batches", "ragged-last-batch", "ragged-unshuffled"])
def test_the_graph_body_trains_to_the_stacked_paths_bits(group, batch, shuffle):
    cfgs = [_cfg(**{**v, "train.batch_size": batch, "train.shuffle": shuffle}) for v in group]
    datas = _data(cfgs)
    ref, graph = _make(StackedDenseStepper, cfgs), _make(GraphedDenseStepper, cfgs)
    st_ref, st = _fit(ref, datas, cfgs[0]), _fit(graph, datas, cfgs[0])
    assert not graph.capture and graph.replays == 0  # a CPU: the body ran eagerly, every step
    assert graph.t == ref.t == 3 * math.ceil(640 / batch)
    assert torch.equal(graph.flat, ref.flat)
    assert torch.equal(graph.mflat, ref.mflat) and torch.equal(graph.vflat, ref.vflat)
    _close(_losses(st), _losses(st_ref))
    if any(v.get("model.activity_l1") for v in group):
        assert st.histories[0].penalty[-1] > 0  # the penalty rows are written, not left at zero


def test_the_fused_adam_a_gpu_captures_is_keras_rule_to_rounding():
    """With ``fused_adam`` (the default on CUDA) the step's Adam is PyTorch's fused kernel given α_t
    as its learning rate and a step count at which it corrects no bias: Keras' rule, rounded in
    another order. Run here on the CPU kernel, the code path a GPU captures: the losses agree to
    1e-5; so do the weights (to 1e-6), except those of the relu-output model, where a value at the
    clip boundary flips its gradient to zero on a rounding difference (measured: ≤ 1e-4, an Adam
    step being ~lr = 1e-3)."""
    cfgs = [_cfg(**{**v, "train.batch_size": 100}) for v in THREE]
    datas = _data(cfgs)
    ref, graph = _make(StackedDenseStepper, cfgs), _make(GraphedDenseStepper, cfgs, fused_adam=True)
    assert graph.fused_adam and not _make(GraphedDenseStepper, cfgs).fused_adam  # off by default on a CPU
    # a β2 so close to 1 that β2ᵗ does not vanish at the fixed step count: the separate operations
    assert not _make(GraphedDenseStepper, [_cfg(**{"train.beta2": 1 - 1e-9})], fused_adam=True).fused_adam
    _close(_losses(_fit(graph, datas, cfgs[0])), _losses(_fit(ref, datas, cfgs[0])))
    assert graph.t == ref.t == 21 and not torch.equal(graph.flat, ref.flat)  # another rounding, truly
    for m, atol in ((0, 1e-6), (1, 2e-4), (2, 1e-6)):
        for l in range(ref.L):
            torch.testing.assert_close(graph.W[l][m], ref.W[l][m], rtol=0, atol=atol)
            torch.testing.assert_close(graph.b[l][m], ref.b[l][m], rtol=0, atol=atol)


def test_the_graph_body_equals_the_autograd_path():
    """The reference path (autograd, torch.optim-style Keras Adam) to the bit, for the lab AE."""
    (cfg,) = cfgs = [_cfg(**{"train.batch_size": 100})]
    datas = _data(cfgs)
    plain = PlainStepper(spec_of(cfg), cfg.train.lr, cfg.train.beta1, cfg.train.beta2, cfg.train.eps, "cpu")
    graph = _make(GraphedDenseStepper, cfgs)
    _close(_losses(_fit(plain, datas, cfg)), _losses(_fit(graph, datas, cfg)))
    for a, b in zip(plain.model.state_dict().values(), graph.export_models()[0].state_dict().values()):
        assert torch.equal(a, b)


def test_a_changed_epoch_is_copied_again_and_an_unchanged_one_is_not():
    """The step reads a static copy of the epoch's rows: another tensor, or the same one changed in
    place, must reach it; the same tensor unchanged is not copied again."""
    cfgs = [_cfg(**{"train.batch_size": 64})]
    x = _data(cfgs)[0].x_train
    graph, ref = _make(GraphedDenseStepper, cfgs), _make(StackedDenseStepper, cfgs)
    nb = 10
    loss_g, pen_g, loss_r, pen_r = (torch.zeros(nb, 1) for _ in range(4))

    def ref_epoch(rows):
        for b in range(nb):
            ref.train_step([rows], rows, slice(b * 64, (b + 1) * 64), loss_r[b], pen_r[b])

    rows = x.clone()
    graph.train_steps([rows], rows, 0, nb, 64, loss_g, pen_g)
    ref_epoch(rows)
    copied = graph._lay.E.clone()
    graph._lay.E.fill_(float("nan"))  # were it copied again, the NaNs would be gone
    graph.train_steps([rows], rows, 0, 1, 64, loss_g, pen_g)
    assert torch.isnan(loss_g[0]).all()  # the same tensor, unchanged: not copied again
    graph._lay.E.copy_(copied)
    graph.load_state(ref.state())  # undo that step: both steppers at the end of epoch 1 again
    rows.mul_(0.5)  # the same tensor, changed in place
    graph.train_steps([rows], rows, 0, nb, 64, loss_g, pen_g)
    ref_epoch(rows)
    other = x.flip(0).contiguous()  # another tensor
    graph.train_steps([other], other, 0, nb, 64, loss_g, pen_g)
    ref_epoch(other)
    assert torch.equal(graph.flat, ref.flat)
    _close(loss_g.flatten().tolist(), loss_r.flatten().tolist())


def test_single_host_steps_and_graph_runs_mix():
    """``train_step`` (a step from the host) between runs of ``train_steps``: the device's step
    count follows the host's, so Adam's α_t is right on both sides."""
    cfgs = [_cfg(**{"train.batch_size": 100, "model.activity_l1": 0.01})]
    y = _data(cfgs)[0].x_train
    graph, ref = _make(GraphedDenseStepper, cfgs), _make(StackedDenseStepper, cfgs)
    nb = 7
    lg, pg, lr_, pr = (torch.zeros(nb, 1) for _ in range(4))
    for _epoch in range(2):
        for b in range(nb):
            ref.train_step([y], y, slice(b * 100, (b + 1) * 100), lr_[b], pr[b])
        graph.train_step([y], y, slice(0, 100), lg[0], pg[0])
        graph.train_step([y], y, slice(100, 200), lg[1], pg[1])
        graph.train_steps([y], y, 2, 5, 100, lg, pg)
        graph.train_step([y], y, slice(500, 600), lg[5], pg[5])
        graph.train_steps([y], y, 6, 7, 100, lg, pg)  # the ragged batch alone
    assert graph.t == ref.t == 14
    assert torch.equal(graph.flat, ref.flat)
    _close(lg.flatten().tolist() + pg.flatten().tolist(), lr_.flatten().tolist() + pr.flatten().tolist())


def test_the_alpha_table_grows_past_its_first_size(monkeypatch):
    monkeypatch.setattr(GraphedDenseStepper, "LR_TABLE", 8)
    cfgs = [_cfg(**{"train.batch_size": 100})]
    datas = _data(cfgs)
    ref, graph = _make(StackedDenseStepper, cfgs), _make(GraphedDenseStepper, cfgs)
    _fit(ref, datas, cfgs[0])
    _fit(graph, datas, cfgs[0])
    assert graph._lr_table.numel() >= 22 and graph._lr_table.numel() < 64  # 21 steps: grown, by doubling
    assert torch.equal(graph.flat, ref.flat)


def test_bad_batch_ranges_are_refused():
    cfgs = [_cfg()]
    y = _data(cfgs)[0].x_train
    graph = _make(GraphedDenseStepper, cfgs)
    buf = torch.zeros(10, 1)
    with pytest.raises(ValueError, match="outside the epoch"):
        graph.train_steps([y], y, 9, 11, 64, buf, buf.clone())
    assert graph.t == 0 and torch.equal(buf, torch.zeros(10, 1))


class _FakeCuda:
    """Stands in for torch.cuda's streams and graphs on a CPU, to check the warm-up / capture /
    replay sequence of ``GraphedDenseStepper._graphed``: a "capture" runs the body and then puts
    back every tensor a step carries to the next (a real capture executes nothing), and a "replay"
    runs the body again (what a real replay computes)."""

    def __init__(self, monkeypatch, stepper) -> None:
        self.events: list[str] = []
        fake = self

        class Stream:
            def __init__(self, device=None):
                fake.events.append("new stream")

            def wait_stream(self, other):
                fake.events.append("wait")

        class StreamCtx:
            def __init__(self, stream):
                self.stream = stream

            def __enter__(self):
                fake.events.append("side stream")

            def __exit__(self, *exc):
                fake.events.append("main stream")

        class CUDAGraph:
            def replay(self):
                fake.events.append("replay")
                stepper._body(stepper._lay, ragged=False)

        class graph:
            def __init__(self, g, stream=None):
                assert isinstance(stream, Stream)  # captured on the warm-up's stream
                self.kept = []

            def __enter__(self):
                fake.events.append("capture")
                lay = stepper._lay
                self.kept = [(t, t.clone()) for t in (stepper.flat, stepper.mflat, stepper.vflat, stepper._counter,
                                                      stepper._t, lay.loss_rows, lay.pen_rows)]

            def __exit__(self, *exc):
                for t, before in self.kept:
                    t.copy_(before)

        monkeypatch.setattr(torch.cuda, "Stream", Stream)
        monkeypatch.setattr(torch.cuda, "stream", StreamCtx)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
        monkeypatch.setattr(torch.cuda, "CUDAGraph", CUDAGraph)
        monkeypatch.setattr(torch.cuda, "graph", graph)


def test_warm_up_capture_and_replay_sequence(monkeypatch):
    """Three eager steps on a side stream, one capture, then one replay per full batch; the ragged
    batch eagerly; a new α_t table (another address) is captured again. The training is the eager
    body's, bit for bit."""
    monkeypatch.setattr(GraphedDenseStepper, "LR_TABLE", 16)
    cfgs = [_cfg(**{"train.batch_size": 100, **v}) for v in THREE]
    datas = _data(cfgs)
    eager, graphed = _make(GraphedDenseStepper, cfgs), _make(GraphedDenseStepper, cfgs)
    graphed.capture = True  # a CPU stepper driven through the fake torch.cuda
    fake = _FakeCuda(monkeypatch, graphed)
    st_e, st_g = _fit(eager, datas, cfgs[0]), _fit(graphed, datas, cfgs[0])
    ev = fake.events
    # epoch 1 (6 full batches + a ragged one): warm-up, capture, 3 replays; the table covers 16 steps
    assert ev[ev.index("side stream") - 1:ev.index("main stream") + 2] == ["wait", "side stream", "main stream", "wait"]
    assert ev.count("side stream") == 1 and ev.count("new stream") >= 1
    # 21 steps: the table grew at the start of epoch 3 (steps 15–21 > 16): a second capture
    assert ev.count("capture") == 2 and ev.count("replay") == 3 * 6 - GraphedDenseStepper.WARMUP
    assert graphed.replays == 15 and graphed.t == eager.t == 21
    assert torch.equal(graphed.flat, eager.flat) and _losses(st_g) == _losses(st_e)


class _StopOnCall(StopFlag):
    """Requests a stop when the stepper's ``train_steps`` is called for the ``k``-th time."""

    def __init__(self, stepper, k: int) -> None:
        super().__init__()
        inner, calls = stepper.train_steps, [0]

        def counted(*a, **kw):
            calls[0] += 1
            if calls[0] == k:
                self.request("test stop")
            return inner(*a, **kw)

        stepper.train_steps = counted


@pytest.mark.parametrize("k, batch", [(3, 0), (4, 3), (5, 6)],
                         ids=["at-the-epoch-end", "mid-epoch", "before-the-ragged-batch"])
def test_stop_and_resume_mid_epoch_equals_an_uninterrupted_run(monkeypatch, k, batch):
    """The loop takes runs of at most STEPS_PER_CALL steps (3 here; 7 batches an epoch: runs 0–2,
    3–5, 6) and checks the stop flag before each: a stop asked during call k lands at the end of
    that run (call 3 ends epoch 1, so its stop is taken at batch 0 of epoch 2), and the resumed run
    is bit for bit the uninterrupted one."""
    monkeypatch.setattr(loop, "STEPS_PER_CALL", 3)
    cfgs = [_cfg(**{"train.batch_size": 100, **v}) for v in THREE]
    datas = _data(cfgs)
    whole = _make(GraphedDenseStepper, cfgs)
    st_whole = _fit(whole, datas, cfgs[0])

    cut = _make(GraphedDenseStepper, cfgs)
    saved = {}

    def on_interrupt(st):
        saved["state"], saved["models"] = st, cut.state()

    with pytest.raises(Interrupted, match=f"epoch 2, batch {batch} of 7"):
        _fit(cut, datas, cfgs[0], stop=_StopOnCall(cut, k), hooks=Hooks(on_interrupt=on_interrupt))
    st = saved["state"]
    assert (st.epoch, st.batch) == (1, batch) and cut.t == 7 + batch
    assert st.loss_rows.shape == (batch, 3) and (st.pen_rows[:, 0] > 0).all()

    resumed = _make(GraphedDenseStepper, cfgs)
    resumed.load_state(saved["models"])
    st2 = _fit(resumed, datas, cfgs[0], state=LoopState(epoch=st.epoch, batch=st.batch, histories=st.histories,
                                                        loss_rows=st.loss_rows, pen_rows=st.pen_rows))
    assert torch.equal(resumed.flat, whole.flat) and resumed.t == whole.t == 21
    assert _losses(st2) == _losses(st_whole)  # the restored batch losses included


def test_a_stepper_without_the_hook_still_takes_single_steps():
    """The loop is unchanged for every other stepper: StackedDenseStepper (the CPU path) and
    PlainStepper have no train_steps, and take one train_step per batch: a slice of rows copied
    in the epoch's order, or (an epoch whose copy was not ready: the first) the batch's row indices."""
    assert not hasattr(StackedDenseStepper, "train_steps") and not hasattr(PlainStepper, "train_steps")
    cfgs = [_cfg(**{"train.batch_size": 100})]
    stepper = _make(StackedDenseStepper, cfgs)
    calls, inner = [], stepper.train_step
    stepper.train_step = lambda *a, **kw: (calls.append(a[2]), inner(*a, **kw))
    datas = _data(cfgs)
    _fit(stepper, datas, cfgs[0])
    assert len(calls) == 7 * 3
    for i, idx in enumerate(calls):
        epoch, b = divmod(i, 7)
        if isinstance(idx, slice):
            assert idx == slice(b * 100, (b + 1) * 100)
        else:
            order = loop.permutation(datas[0].x_train.shape[0], cfgs[0].train.seed, epoch, True, CPU)
            assert torch.equal(idx, order[b * 100:(b + 1) * 100])
    assert not isinstance(calls[0], slice)


# -- the switch and the wiring --------------------------------------------------------------------------
def test_the_switch(monkeypatch):
    monkeypatch.delenv(graphs.ENV, raising=False)
    assert not wanted(CPU) and dense_stepper_class(CPU) is StackedDenseStepper  # a CPU: nothing changes
    assert wanted(torch.device("cuda")) and dense_stepper_class(torch.device("cuda")) is GraphedDenseStepper
    for off in ("0", "false", "OFF", " no "):
        monkeypatch.setenv(graphs.ENV, off)
        assert not wanted(torch.device("cuda")) and dense_stepper_class(torch.device("cuda")) is StackedDenseStepper
    monkeypatch.setenv(graphs.ENV, "1")
    assert wanted(torch.device("cuda:0")) and not wanted(CPU)
    monkeypatch.setenv(graphs.ENV, "maybe")
    with pytest.raises(ConfigError, match="AELAB_CUDA_GRAPHS='maybe' is not understood; set it to 1"):
        wanted(CPU)
    with pytest.raises(ValueError, match="need a CUDA device"):
        _make(GraphedDenseStepper, [_cfg()], capture=True)


def test_a_bad_switch_value_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from aelab.cli import main

    monkeypatch.setenv(graphs.ENV, "sometimes")
    code = main(["train", "--dataset", "synthetic", "--limit", "128", "--test-limit", "32", "--epochs", "1",
                 "-q", "--device", "cpu", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "AELAB_CUDA_GRAPHS='sometimes'" in err and "Traceback" not in err


def test_train_runs_uses_the_graph_stepper_where_wanted(tmp_path, monkeypatch):
    """The wiring (runs._train_group), on a CPU with the switch forced: the run records the graph
    stepper and ends with the default path's weights; interrupted and resumed through its checkpoint
    on disk, it still does."""
    from safetensors.torch import load_file

    from aelab.runs import train_runs

    cfg = _cfg(**{"data.limit": 600, "data.test_limit": 100, "train.epochs": 2, "model.activity_l1": 1e-3})
    train_runs([cfg], [tmp_path / "ref"], device="cpu", progress=False)
    monkeypatch.setattr(graphs, "wanted", lambda dev: True)
    monkeypatch.setattr(loop, "STEPS_PER_CALL", 4)  # 10 batches an epoch: runs 0–3, 4–7, 8–9
    train_runs([cfg], [tmp_path / "g"], device="cpu", progress=False)
    with pytest.raises(Interrupted, match=r"\(epoch 2, batch 4\)"):
        train_runs([cfg], [tmp_path / "cut"], device="cpu", progress=False, stop=StopAfter(5))
    train_runs([cfg], [tmp_path / "cut"], device="cpu", progress=False)
    ref_w = load_file(str(tmp_path / "ref" / "weights.safetensors"))
    ref_h = json.loads((tmp_path / "ref" / "history.json").read_text())
    assert json.loads((tmp_path / "ref" / "run.json").read_text())["engine"] == "StackedDenseStepper"
    for name in ("g", "cut"):
        assert json.loads((tmp_path / name / "run.json").read_text())["engine"] == "GraphedDenseStepper"
        w = load_file(str(tmp_path / name / "weights.safetensors"))
        assert all(torch.equal(ref_w[k], w[k]) for k in ref_w)
        _close(json.loads((tmp_path / name / "history.json").read_text())["loss"], ref_h["loss"])


# -- on a GPU: the real capture --------------------------------------------------------------------------
@cuda
@pytest.mark.parametrize("group", [ONE, THREE, NOISY], ids=["M1", "M3-mixed", "M3-own-inputs"])
def test_cuda_captured_steps_equal_the_eager_body(group, monkeypatch):
    """Replaying the captured step is the eager body, kernel for kernel (expected to the bit; asserted
    to the tolerances of the fused-Adam test above, far below what a wrong batch, step count or α_t
    would give, in case cuBLAS picks another kernel inside a capture)."""
    dev = torch.device("cuda")
    monkeypatch.delenv(graphs.ENV, raising=False)
    assert dense_stepper_class(dev) is GraphedDenseStepper  # the default on a GPU
    cfgs = [_cfg(**{**v, "train.batch_size": 100}) for v in group]
    datas = _data(cfgs, dev)
    eager, graphed = _make(GraphedDenseStepper, cfgs, dev, capture=False), _make(GraphedDenseStepper, cfgs, dev)
    assert graphed.capture and not eager.capture
    st_e, st_g = _fit(eager, datas, cfgs[0]), _fit(graphed, datas, cfgs[0])
    assert graphed.replays == 3 * 6 - GraphedDenseStepper.WARMUP and eager.replays == 0
    torch.testing.assert_close(graphed.flat, eager.flat, rtol=0, atol=2e-4)
    _close(_losses(st_g), _losses(st_e))


@cuda
@pytest.mark.parametrize("group", [ONE, THREE], ids=["M1", "M3-mixed"])
def test_cuda_graphs_agree_with_the_cpu_path(group):
    """Another device, other summation orders (cuBLAS, CUDA reductions): the same training to
    rounding, amplified over 18 steps."""
    cfgs = [_cfg(**{**v, "train.batch_size": 100}) for v in group]
    cpu = _fit(_make(StackedDenseStepper, cfgs), _data(cfgs), cfgs[0])
    dev = torch.device("cuda")
    gpu = _fit(_make(GraphedDenseStepper, cfgs, dev), _data(cfgs, dev), cfgs[0])
    _close(_losses(gpu), _losses(cpu), rel=1e-3)


@cuda
def test_cuda_stop_and_resume_mid_epoch(monkeypatch):
    monkeypatch.setattr(loop, "STEPS_PER_CALL", 3)
    dev = torch.device("cuda")
    cfgs = [_cfg(**{"train.batch_size": 100, **v}) for v in THREE]
    datas = _data(cfgs, dev)
    whole = _make(GraphedDenseStepper, cfgs, dev)
    st_whole = _fit(whole, datas, cfgs[0])
    cut, saved = _make(GraphedDenseStepper, cfgs, dev), {}
    with pytest.raises(Interrupted, match="epoch 2, batch 3 of 7"):
        _fit(cut, datas, cfgs[0], stop=_StopOnCall(cut, 3),
             hooks=Hooks(on_interrupt=lambda st: saved.update(state=st, models=cut.state())))
    st = saved["state"]
    resumed = _make(GraphedDenseStepper, cfgs, dev)
    resumed.load_state(saved["models"])
    st2 = _fit(resumed, datas, cfgs[0], state=LoopState(epoch=st.epoch, batch=st.batch, histories=st.histories,
                                                        loss_rows=st.loss_rows, pen_rows=st.pen_rows))
    torch.testing.assert_close(resumed.flat, whole.flat, rtol=0, atol=2e-4)
    _close(_losses(st2), _losses(st_whole))


@cuda
def test_cuda_a_stacked_sweep_gives_each_model_its_own_run():
    """64 models in one captured step: model 0 trains as it does alone, to rounding."""
    dev = torch.device("cuda")
    values = [1e-7 * 10 ** (i / 10) for i in range(64)]
    cfgs = [_cfg(**{"model.activity_l1": v, "train.epochs": 2}) for v in values]
    datas = _data(cfgs, dev)
    many = _fit(_make(GraphedDenseStepper, cfgs, dev), datas, cfgs[0])
    alone = _fit(_make(GraphedDenseStepper, cfgs[:1], dev), datas[:1], cfgs[0])
    _close(many.histories[0].loss + many.histories[0].val_loss, alone.histories[0].loss + alone.histories[0].val_loss,
           rel=1e-4)


@cuda
def test_cuda_a_nan_still_stops_the_run_with_its_batch():
    dev = torch.device("cuda")
    cfg = _cfg(**{"train.shuffle": False})
    (d,) = _data([cfg], dev)
    x = d.x_train.clone()
    x[200, 5] = float("nan")  # batch 4 (rows 192–255) of every epoch without shuffling
    with pytest.raises(TrainingError, match=r"became nan at epoch 1, batch 4"):
        _fit(_make(GraphedDenseStepper, [cfg], dev), [TrainData(x, d.x_val, seed=cfg.train.seed)], cfg)
