"""Masks stay exactly zero through training; ``remove`` and ``make_permanent``; devices."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import onnxprune.torch as opt  # noqa: E402
from onnxprune.errors import InvalidOptionError  # noqa: E402

nn = torch.nn
parametrize = torch.nn.utils.parametrize


def make_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def half_masks(model, seed=0):
    gen = np.random.default_rng(seed)
    return {
        name: gen.random(tuple(p.shape)) < 0.5
        for name, p in model.named_parameters()
        if name.endswith("weight")
    }


OPTIMIZERS = {
    "sgd-momentum-wd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
    "sgd-nesterov-wd": lambda ps: torch.optim.SGD(
        ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1
    ),
    "adam-wd": lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_masked_weights_stay_exactly_zero_while_training(make_optimizer):
    model = make_mlp()
    masks = half_masks(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    handle = opt.apply_masks(model, masks)
    optimizer = make_optimizer(model.parameters())
    gen = torch.Generator().manual_seed(0)
    for _ in range(25):
        x, y = torch.randn(16, 8, generator=gen), torch.randint(0, 4, (16,), generator=gen)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for name, mask in masks.items():
            index = int(name.split(".")[0])
            grad = model[index].parametrizations.weight.original.grad
            assert torch.all(grad[torch.from_numpy(~mask)] == 0), name  # no gradient there
            assert torch.any(grad[torch.from_numpy(mask)] != 0), name  # but elsewhere
        optimizer.step()
    for name, mask in masks.items():
        index = int(name.split(".")[0])
        keep = torch.from_numpy(mask)
        weight = model[index].weight  # as the forward pass sees it
        original = model[index].parametrizations.weight.original  # as the optimizer sees it
        assert torch.all(weight[~keep] == 0) and torch.all(original[~keep] == 0), name
        assert not torch.equal(weight[keep], before[name][keep]), "training changed nothing"
    assert handle.sparsity() == {n: float((~m).mean()) for n, m in masks.items()}


def test_make_permanent_bakes_zeros_and_keeps_the_parameters():
    model = make_mlp()
    masks = half_masks(model)
    params = [model[0].weight, model[2].weight]
    handle = opt.apply_masks(model, masks)
    assert set(model.state_dict()) >= {"0.parametrizations.weight.0.mask"}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    nn.functional.cross_entropy(model(torch.randn(4, 8)), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()
    handle.make_permanent()
    assert not handle.active
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert sorted(model.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert model[0].weight is params[0] and model[2].weight is params[1]  # optimizer still valid
    for index, name in ((0, "0.weight"), (2, "2.weight")):
        np.testing.assert_array_equal(model[index].weight.detach().numpy() != 0, masks[name])
    with pytest.raises(InvalidOptionError, match="already removed or made permanent"):
        handle.make_permanent()
    with pytest.raises(InvalidOptionError):
        handle.remove()


def test_remove_restores_the_plain_module_and_the_pruned_values():
    model = make_mlp()
    masks = half_masks(model)
    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    param = model[0].weight
    handle = opt.apply_masks(model, masks)
    assert parametrize.is_parametrized(model[0], "weight")
    with torch.no_grad():
        model[0].parametrizations.weight.original.add_(1.0)  # "training" of the kept entries
    handle.remove()
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert model[0].weight is param and isinstance(model[0].weight, nn.Parameter)
    keep = torch.from_numpy(masks["0.weight"])
    assert torch.equal(model[0].weight[~keep], dense["0.weight"][~keep])  # restored
    assert torch.equal(model[0].weight[keep], dense["0.weight"][keep] + 1.0)  # trained
    keep2 = torch.from_numpy(masks["2.weight"])
    assert torch.equal(model[2].weight[~keep2], dense["2.weight"][~keep2])


def test_masks_follow_the_module_to_another_device():
    model = make_mlp()
    masks = half_masks(model)
    handle = opt.apply_masks(model, masks)
    model.to("meta")
    buffer = model[0].parametrizations.weight[0].mask
    assert buffer.device.type == "meta" and buffer.dtype == torch.bool
    assert model[0].weight.device.type == "meta"
    assert model(torch.empty(3, 8, device="meta")).shape == (3, 4)
    handle.make_permanent()
    assert model[0].weight.device.type == "meta"


def test_masks_are_applied_on_the_module_device():
    model = make_mlp().to("meta")
    handle = opt.apply_masks(model, half_masks(make_mlp()))
    assert model[2].parametrizations.weight[0].mask.device.type == "meta"
    handle.remove()  # nothing to restore on meta, but the module is plain again
    assert not parametrize.is_parametrized(model[2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_masks_hold_on_cuda():
    model = make_mlp()
    masks = half_masks(model)
    handle = opt.apply_masks(model, masks)
    model.cuda()
    assert model[0].parametrizations.weight[0].mask.is_cuda
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(10):
        optimizer.zero_grad()
        x = torch.randn(16, 8, device="cuda")
        nn.functional.cross_entropy(
            model(x), torch.zeros(16, dtype=torch.long, device="cuda")
        ).backward()
        optimizer.step()
    handle.make_permanent()
    for index, name in ((0, "0.weight"), (2, "2.weight")):
        np.testing.assert_array_equal(model[index].weight.detach().cpu().numpy() != 0, masks[name])


def test_tied_weights_are_masked_everywhere_they_are_used():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    b.weight = a.weight
    model = nn.Sequential(a, nn.ReLU(), b)
    mask = np.eye(4, dtype=bool) | np.eye(4, k=1, dtype=bool)
    handle = opt.apply_masks(model, {"0.weight": mask})
    assert parametrize.is_parametrized(model[0]) and parametrize.is_parametrized(model[2])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        model(torch.randn(8, 4)).pow(2).sum().backward()
        optimizer.step()
    for index in (0, 2):
        assert torch.all(model[index].weight[torch.from_numpy(~mask)] == 0)
    handle.make_permanent()
    assert model[0].weight is model[2].weight
    np.testing.assert_array_equal(model[0].weight.detach().numpy() != 0, mask)
