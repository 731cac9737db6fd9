"""The retraining loop: schedule, history, trainability accuracy, masks held, modes restored."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import onnxprune.torch as opt  # noqa: E402
from onnxprune import progress  # noqa: E402
from onnxprune.errors import InvalidOptionError  # noqa: E402
from onnxprune.torch.finetune import check_schedule, learning_rate  # noqa: E402

nn = torch.nn


def blobs(n=256, seed=0):
    """Four well separated Gaussian blobs in 2-D: a tiny MLP learns them in a few epochs."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    centers = torch.tensor([[3.0, 3.0], [-3.0, 3.0], [3.0, -3.0], [-3.0, -3.0]])
    x = centers[labels] + 0.5 * torch.randn(n, 2, generator=gen)
    data = torch.utils.data.TensorDataset(x, labels)
    return torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, generator=gen)


@pytest.mark.slow
def test_history_follows_the_schedule_and_masks_hold():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 4))
    mask = np.random.default_rng(0).random((32, 2)) < 0.5
    handle = opt.apply_masks(model, {"0.weight": mask})
    model.eval()
    result = opt.finetune(
        model, blobs(), blobs(seed=1), schedule={3: 1e-3, 0: 0.05}, epochs=5, weight_decay=0.01
    )
    assert not model.training  # left in the mode it came in
    assert [r.epoch for r in result.history] == [0, 1, 2, 3, 4]
    assert [r.lr for r in result.history] == [0.05, 0.05, 0.05, 1e-3, 1e-3]
    assert result.schedule == ((0, 0.05), (3, 1e-3))
    first_stage = [r.val_accuracy for r in result.history[:3]]
    assert result.trainability_accuracy == pytest.approx(sum(first_stage) / 3)
    assert result.final_accuracy == result.history[-1].val_accuracy
    assert result.initial_accuracy < 0.6 < result.final_accuracy  # it learned
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert torch.all(model[0].weight[torch.from_numpy(~mask)] == 0)
    d = result.to_dict()
    assert d["schedule"] == {"0": 0.05, "3": 1e-3} and d["epochs"] == 5
    assert d["optimizer"] == "SGD" and d["momentum"] == 0.9 and d["weight_decay"] == 0.01
    assert d["trainability_accuracy"] == result.trainability_accuracy
    assert len(d["history"]) == 5 and set(d["history"][0]) == {
        "epoch",
        "lr",
        "train_loss",
        "val_accuracy",
    }
    handle.make_permanent()


def test_one_stage_trainability_is_the_mean_of_all_epochs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4))
    model.train()
    result = opt.finetune(model, blobs(), blobs(seed=1), schedule={0: 0.01}, epochs=2)
    assert model.training
    accs = [r.val_accuracy for r in result.history]
    assert result.trainability_accuracy == pytest.approx(sum(accs) / 2)


def test_evaluate_counts_top1():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))  # predicts the larger coordinate
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 1, 0])  # right, right, wrong, wrong
    assert opt.evaluate(model, [(x[:3], y[:3]), (x[3:], y[3:])]) == 0.5


@pytest.mark.parametrize(
    ("schedule", "epochs", "message"),
    [
        ({1: 0.1}, 3, "must give the learning rate of epoch 0"),
        ({}, 3, "must give the learning rate of epoch 0"),
        ({0: 0.1, 3: 0.01}, 3, r"schedule epoch 3 must be an integer in \[0, 3\)"),
        ({0: 0.1, -1: 0.01}, 3, "schedule epoch -1"),
        ({0: 0.1, 1.5: 0.01}, 3, "schedule epoch 1.5"),
        ({0: 0.0}, 3, "learning rate 0.0 must be a number > 0"),
        ({0: float("nan")}, 3, "learning rate nan"),
        ({0: 0.1}, 0, "epochs=0 must be an integer >= 1"),
    ],
)
def test_bad_schedules_are_refused(schedule, epochs, message):
    with pytest.raises(InvalidOptionError, match=message):
        check_schedule(schedule, epochs)


def test_learning_rate_of_each_epoch():
    stages = check_schedule({0: 1e-2, 30: 1e-3, 60: 1e-4, 75: 1e-5}, 90)
    assert [learning_rate(stages, e) for e in (0, 29, 30, 59, 60, 74, 75, 89)] == [
        1e-2,
        1e-2,
        1e-3,
        1e-3,
        1e-4,
        1e-4,
        1e-5,
        1e-5,
    ]


def test_empty_loaders_are_refused():
    model = nn.Linear(2, 2)
    with pytest.raises(InvalidOptionError, match="validation loader gave no samples"):
        opt.finetune(model, [], [], schedule={0: 0.1}, epochs=1)


def test_each_epoch_reports_progress_with_its_figures():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 4))
    seen: list[progress.Progress] = []
    with progress.listening(seen.append):
        result = opt.finetune(model, blobs(64), blobs(64, seed=1), schedule={0: 0.05}, epochs=3)
    epochs = [p for p in seen if p.stage == "finetune"]
    assert [(p.done, p.total) for p in epochs] == [(1, 3), (2, 3), (3, 3)]
    for p, record in zip(epochs, result.history, strict=True):
        assert p.note == f"loss {record.train_loss:.4f}, val {record.val_accuracy:.4f}"
