"""The report says what early stopping and a learning-rate schedule did to a run (issue 22: "visible in
the history and the report")."""

from aelab.report.render import _curves_caption


def _run(name, history, train):
    return {"name": name, "history": {"loss": [1.0, 0.5, 0.4], "val_loss": [1.0, 0.6, 0.5], **history},
            "config": {"train": {"epochs": 10, **train}}, "metrics": {}}


def test_the_curves_caption_says_when_early_stopping_stopped_and_how_the_rate_moved():
    b = _run("base", {"lr": [1e-3] * 3}, {})
    v = _run("es", {"lr": [1e-3, 1e-3, 1e-4], "stopped_epoch": 3, "restored_epoch": 1},
             {"early_stopping": {"monitor": "val_loss", "patience": 2}, "lr_schedule": {"kind": "plateau"}})
    cap = _curves_caption(b, v)
    assert ("Early stopping (val_loss, patience 2) stopped es after epoch 3 of 10; es ends with the weights of "
            "epoch 1, its best; es's learning rate went from 0.001 to 0.0001 (plateau schedule).") in cap
    assert "base" not in cap  # a constant rate and no stop: nothing to say
    assert _curves_caption(b, b).endswith("validation dashed.")
