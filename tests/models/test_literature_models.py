"""The McMahan et al. CNN and the CIFAR-style ResNet-18: shapes, exact parameter counts, the
body/head split, input checks, and that one can train."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pfedkit.core.errors import ConfigError
from pfedkit.models.fedavg_cnn import FedAvgCNNOptions, fedavg_cnn
from pfedkit.models.resnet import ResNet18Options, resnet18
from pfedkit.models.split import SplitModel


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny_cnn(shape: tuple[int, int, int], padding: int = 0) -> SplitModel:
    return fedavg_cnn(shape, 10, FedAvgCNNOptions(width=4, feature_dim=16, padding=padding))


def tiny_resnet(shape: tuple[int, int, int], norm: str = "batch") -> SplitModel:
    return resnet18(shape, 10, ResNet18Options(width=4, norm=norm))


BUILDERS = {"cnn": tiny_cnn, "resnet-batch": tiny_resnet, "resnet-group": lambda s: tiny_resnet(s, "group")}


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_output_shapes(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = BUILDERS[name](shape)
    x = torch.randn(2, *shape)
    feats = model.features(x)
    assert feats.shape == (2, model.feature_dim)
    assert feats.shape[1] == (16 if name == "cnn" else 8 * 4)
    assert model(x).shape == (2, 10)


def test_fedavg_cnn_parameter_count_fashion_mnist() -> None:
    # 1x28x28, padding 0: conv5 -> 24, pool -> 12, conv5 -> 8, pool -> 4; flat = 64 * 4 * 4 = 1024
    conv1 = 1 * 32 * 5 * 5 + 32  # 832
    conv2 = 32 * 64 * 5 * 5 + 64  # 51,264
    fc1 = 1024 * 512 + 512  # 524,800
    head = 512 * 10 + 10  # 5,130
    assert conv1 + conv2 + fc1 + head == 582_026
    model = fedavg_cnn((1, 28, 28), 10, FedAvgCNNOptions())
    assert n_params(model) == 582_026
    assert model.body.fc1.in_features == 1024


def test_fedavg_cnn_padding2_matches_mcmahan_paper_and_pfllib_cifar_flat_size() -> None:
    # padding 2 ("same"): 28 -> 28 -> 14 -> 14 -> 7; flat = 64 * 7 * 7 = 3136. McMahan et al. (2017)
    # report "1,663,370 total parameters" for this network.
    fc1 = 3136 * 512 + 512  # 1,606,144
    assert 832 + 51_264 + fc1 + 5_130 == 1_663_370
    assert n_params(fedavg_cnn((1, 28, 28), 10, FedAvgCNNOptions(padding=2))) == 1_663_370
    # PFLlib FedAvgCNN on CIFAR-10 (3x32x32, padding 0): 32 -> 28 -> 14 -> 10 -> 5; flat = 1600
    assert fedavg_cnn((3, 32, 32), 10, FedAvgCNNOptions()).body.fc1.in_features == 1600


def test_resnet18_parameter_count_cifar10() -> None:
    def conv(c_in: int, c_out: int, k: int) -> int:
        return c_in * c_out * k * k  # no bias

    def norm(c: int) -> int:
        return 2 * c  # weight + bias (BatchNorm and GroupNorm alike)

    def block(c_in: int, c_out: int) -> int:
        n = conv(c_in, c_out, 3) + norm(c_out) + conv(c_out, c_out, 3) + norm(c_out)
        if c_in != c_out:  # stride-2 first block of stages 2-4: 1x1 conv + norm shortcut
            n += conv(c_in, c_out, 1) + norm(c_out)
        return n

    stem = conv(3, 64, 3) + norm(64)  # 1,856
    stages = sum(block(c_in, c_out) + block(c_out, c_out)
                 for c_in, c_out in [(64, 64), (64, 128), (128, 256), (256, 512)])
    head = 512 * 10 + 10
    assert stem + stages + head == 11_173_962  # the usual "11.17M" of CIFAR ResNet-18
    model = resnet18((3, 32, 32), 10, ResNet18Options())
    assert n_params(model) == 11_173_962
    assert model.feature_dim == 512 and model.head.in_features == 512


def test_group_norm_variant_has_no_batchnorm_and_no_buffers() -> None:
    model = tiny_resnet((3, 32, 32), norm="group")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    groupnorms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert groupnorms and all(m.num_groups == 2 for m in groupnorms)
    assert list(model.buffers()) == []
    assert set(model.state_dict()) == {name for name, _ in model.named_parameters()}
    # same parameters as the BatchNorm model, which also has running statistics
    batch = tiny_resnet((3, 32, 32))
    assert n_params(batch) == n_params(model)
    assert any(k.endswith("running_mean") for k in batch.state_dict())
    with pytest.raises(ConfigError, match="even"):
        resnet18((3, 32, 32), 10, ResNet18Options(width=3, norm="group"))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_body_head_split_names(name: str) -> None:
    model = BUILDERS[name]((1, 28, 28))
    body, head = model.part_names("body"), model.part_names("head")
    assert head == ["head.weight", "head.bias"]
    assert body and all(k.startswith("body.") for k in body)
    assert sorted(body + head) == sorted(model.state_dict())
    expected = ("body.conv1.weight", "body.fc1.weight") if name == "cnn" else (
        "body.conv1.weight", "body.layer4.1.conv2.weight")
    assert set(expected) <= set(body)


def test_too_small_input_raises_value_error() -> None:
    with pytest.raises(ValueError, match="input 8x8 is too small.*padding=2"):
        fedavg_cnn((1, 8, 8), 10, FedAvgCNNOptions())
    with pytest.raises(ValueError, match="at least 16x16"):
        tiny_cnn((1, 15, 28))
    with pytest.raises(ConfigError):  # CLI users get a one-line message too
        tiny_cnn((1, 8, 8))
    assert tiny_cnn((1, 16, 16))(torch.zeros(1, 1, 16, 16)).shape == (1, 10)  # smallest for padding 0
    assert tiny_cnn((1, 8, 8), padding=2)(torch.zeros(1, 1, 8, 8)).shape == (1, 10)  # 8x8 digits
    with pytest.raises(ValueError):
        tiny_resnet((3, 0, 32))
    assert tiny_resnet((1, 8, 8))(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="padding"):
        fedavg_cnn((1, 28, 28), 10, FedAvgCNNOptions(padding=1))
    with pytest.raises(ConfigError, match="width"):
        fedavg_cnn((1, 28, 28), 10, FedAvgCNNOptions(width=0))
    with pytest.raises(ConfigError, match="norm"):
        resnet18((3, 32, 32), 10, ResNet18Options(norm="layer"))


LEARNING_RATES = {"cnn": 0.1, "resnet-batch": 0.05, "resnet-group": 0.05}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_training_steps_reduce_loss_on_fixed_batch(name: str) -> None:
    # plain gradient steps written out: constructing a torch.optim optimiser first imports
    # torch._dynamo, which alone costs over a second
    torch.manual_seed(0)
    shape = (3, 20, 20)
    model = BUILDERS[name](shape)
    x, y = torch.randn(8, *shape), torch.arange(8) % 10
    model.train()
    losses = []
    for _ in range(10):
        model.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        with torch.no_grad():
            for p in model.parameters():
                p -= LEARNING_RATES[name] * p.grad
        losses.append(loss.item())
    with torch.no_grad():
        final = F.cross_entropy(model(x), y).item()
    assert final < 0.95 * losses[0], (losses, final)
