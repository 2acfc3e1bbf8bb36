"""fewzero.transfer: the blocks of a network, freeze(up_to=k), and per-block learning-rate groups."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fewzero.errors import FewzeroError
from fewzero.registry import BACKBONES
from fewzero.transfer import block_names, freeze, named_blocks, param_groups

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def conv4():
    return BACKBONES.create("conv4", in_channels=1, hidden=8)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def test_frozen_weights_and_batch_norm_statistics_stay_bit_identical_after_a_fine_tuning_step():
    model = freeze(conv4(), up_to=2)
    model.train()  # train mode must not unfreeze the frozen batch-norm statistics
    before = snapshot(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(torch.rand(6, 1, 28, 28)).pow(2).sum().backward()
    optimizer.step()
    after = model.state_dict()
    for name, value in before.items():
        block = int(name.split(".")[1])  # blocks.<index>.<layer>...
        if "num_batches_tracked" in name:
            continue
        if block < 2:
            assert torch.equal(after[name], value), f"{name} of a frozen block changed"
        elif name.endswith(("weight", "running_mean")):
            assert not torch.equal(after[name], value), f"{name} of a trainable block did not change"


def test_freezing_zero_blocks_unfreezes_everything_again():
    model = freeze(freeze(conv4(), up_to=4), up_to=0).train()
    assert all(p.requires_grad for p in model.parameters())
    before = snapshot(model)
    model(torch.rand(4, 1, 28, 28))
    assert not torch.equal(model.state_dict()["blocks.0.1.running_mean"], before["blocks.0.1.running_mean"])


def test_every_registered_backbone_names_its_blocks():
    for name in BACKBONES.available():
        backbone = BACKBONES.create(name, in_channels=1)
        names = block_names(backbone)
        assert len(names) == len(set(names))
        covered = {id(p) for _, block in named_blocks(backbone) for p in block.parameters()}
        assert covered == {id(p) for p in backbone.parameters()}, f"{name}: parameters outside its blocks"


def test_learning_rates_reach_the_optimizer_as_given():
    model = conv4()
    lrs = {"block1": 1e-4, "block3": 3e-3}
    optimizer = torch.optim.SGD(param_groups(model, lr=0.05, lrs=lrs), lr=1.0)
    by_name = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert by_name == {"block1": 1e-4, "block2": 0.05, "block3": 3e-3, "block4": 0.05}
    first = next(iter(named_blocks(model)[0][1].parameters()))
    assert any(first is p for p in optimizer.param_groups[0]["params"])


def test_a_frozen_block_leaves_no_group():
    groups = param_groups(freeze(conv4(), up_to=3), lr=0.1)
    assert [g["name"] for g in groups] == ["block4"]


def test_parameters_outside_the_blocks_get_the_base_rate():
    class WithScale(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
            self.scale = nn.Parameter(torch.ones(()))

        def named_blocks(self):
            return list(self.body.named_children())

    groups = param_groups(WithScale(), lr=0.2, lrs={"1": 0.5})
    assert [(g["name"], g["lr"], len(g["params"])) for g in groups] == [("0", 0.2, 2), ("1", 0.5, 2), ("other", 0.2, 1)]


@settings(max_examples=30, deadline=None)
@given(n_blocks=st.integers(1, 7), data=st.data())
def test_property_freeze_and_decay_over_plain_sequentials(n_blocks, data):
    model = nn.Sequential(*(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)) for _ in range(n_blocks)))
    k = data.draw(st.integers(0, n_blocks))
    decay = data.draw(st.floats(0.1, 1.0))
    freeze(model, up_to=k)
    for index, block in enumerate(model):
        assert all(p.requires_grad == (index >= k) for p in block.parameters())
    groups = param_groups(model, lr=0.1, decay=decay)
    assert [g["name"] for g in groups] == [str(i) for i in range(k, n_blocks)]
    for group in groups:
        assert group["lr"] == pytest.approx(0.1 * decay ** (n_blocks - 1 - int(group["name"])))


@pytest.mark.parametrize("call, message", [
    (lambda m: freeze(m, up_to=5), "it has 4"),
    (lambda m: freeze(m, up_to=-1), "give 0..4"),
    (lambda m: param_groups(m, lrs={"block9": 0.1}), "unknown block 'block9'"),
    (lambda m: param_groups(m, lrs={"block1": -0.1}), "must be a number >= 0"),
    (lambda m: param_groups(m, lr=float("nan")), "must be a number >= 0"),
    (lambda m: param_groups(m, lrs={"block1": 0.1}, decay=0.5), "not both"),
    (lambda m: param_groups(m, decay=0), "decay must be a number > 0"),
])
def test_bad_settings_are_one_clear_error(call, message):
    with pytest.raises(FewzeroError, match=message):
        call(conv4())


def test_a_module_without_blocks_says_what_to_do():
    with pytest.raises(FewzeroError, match="named_blocks"):
        named_blocks(nn.Linear(2, 2))
