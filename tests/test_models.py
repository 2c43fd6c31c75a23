"""The six models: parameter counts (derived), shapes, logits, the registry."""
import pytest
import torch
import torchvision
from torch import nn

from cnnlab.models import count_parameters, get_model, list_models
from cnnlab.models.resnet import BasicBlock, make_downsample


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    """Weights k*k*cin*cout, plus one bias per output channel."""
    return k * k * cin * cout + (cout if bias else 0)


def fc(fin: int, fout: int) -> int:
    return fin * fout + fout


def bn(c: int) -> int:
    """BatchNorm's weight and bias (running stats are buffers, not parameters)."""
    return 2 * c


# Each count is derived layer by layer from the architecture; each equals
# the count the report printed (its only fingerprint of its models), except
# resnet18's: its projection shortcuts add 173,824 to the report's 11,001,546
# (the report's reused-conv1 shortcut, tested below).
LENET = (conv(1, 6, 5) + conv(6, 16, 5)           # C1, C3 (full connections)
         + fc(16 * 4 * 4, 120) + fc(120, 84) + fc(84, 10))
ALEXNET = (conv(1, 48, 5) + conv(48, 128, 5) + conv(128, 192, 3)
           + conv(192, 192, 3) + conv(192, 128, 3)
           + fc(128 * 7 * 7, 4096) + fc(4096, 4096) + fc(4096, 10))
ALEXNET_LARGE = (conv(1, 96, 11) + conv(96, 256, 5) + conv(256, 384, 3)
                 + conv(384, 384, 3) + conv(384, 256, 3)
                 + fc(256 * 6 * 6, 4096) + fc(4096, 4096) + fc(4096, 10))


def resnet18_count(projection: bool) -> int:
    total = conv(1, 64, 7, bias=False) + bn(64)            # stem
    cin = 64
    for width in (64, 128, 256, 512):
        for block in range(2):
            total += conv(cin, width, 3, False) + bn(width) + conv(width, width, 3, False) + bn(width)
            if block == 0 and cin != width and projection:
                total += conv(cin, width, 1, False) + bn(width)  # 1x1 projection
            cin = width
    return total + fc(512, 10)


def mobilenet_count() -> int:
    total = conv(1, 32, 3, False) + bn(32)
    cin = 32
    for cout in [64, 128, 128, 256, 256, 512] + [512] * 5 + [1024, 1024]:
        total += 3 * 3 * cin + bn(cin)                     # depthwise: one 3x3 filter per channel
        total += conv(cin, cout, 1, False) + bn(cout)      # pointwise
        cin = cout
    return total + fc(1024, 10)


def inception(cin, c1, c3r, c3, c5r, c5, pp) -> int:
    return (conv(cin, c1, 1) + conv(cin, c3r, 1) + conv(c3r, c3, 3)
            + conv(cin, c5r, 1) + conv(c5r, c5, 5) + conv(cin, pp, 1))


# The paper's Table 1, typed again here from the paper, not imported.
GOOGLENET = (conv(1, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
             + inception(192, 64, 96, 128, 16, 32, 32)
             + inception(256, 128, 128, 192, 32, 96, 64)
             + inception(480, 192, 96, 208, 16, 48, 64)
             + inception(512, 160, 112, 224, 24, 64, 64)
             + inception(512, 128, 128, 256, 24, 64, 64)
             + inception(512, 112, 144, 288, 32, 64, 64)
             + inception(528, 256, 160, 320, 32, 128, 128)
             + inception(832, 256, 160, 320, 32, 128, 128)
             + inception(832, 384, 192, 384, 48, 128, 128)
             + fc(1024, 10))

EXPECTED = {
    "lenet": (LENET, 44_426),
    "alexnet": (ALEXNET, 43_446_122),
    "alexnet_large": (ALEXNET_LARGE, 58_299_082),
    "resnet18": (resnet18_count(projection=True), 11_175_370),
    "mobilenet_v1": (mobilenet_count(), 3_216_650),
    "googlenet": (GOOGLENET, 5_977_530),
}


def test_registry_lists_the_six_models():
    assert list_models() == list(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_parameter_count_matches_derivation_and_report(name):
    derived, report = EXPECTED[name]
    assert derived == report, "the derivation above disagrees with the report"
    assert count_parameters(get_model(name)) == report


def test_resnet18_zero_pad_shortcut_has_the_reports_count():
    # 11,001,546: the report's ResNet-18 (cnnlab/report.py); option A adds no weights.
    assert resnet18_count(projection=False) == 11_001_546
    assert count_parameters(get_model("resnet18", shortcut="zero_pad")) == 11_001_546


def test_resnet18_matches_torchvision_as_oracle():
    """Same layers as torchvision's ResNet-18 with a 1-channel stem and 10 classes."""
    ref = torchvision.models.resnet18(num_classes=10)
    ref.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    ours = get_model("resnet18")
    ref_shapes = {k: v.shape for k, v in ref.state_dict().items()}
    our_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert our_shapes == ref_shapes


def test_zero_init_residual_branch_leaves_block_an_identity():
    """A block whose last BN has zero scale must pass x through (after ReLU)."""
    block = BasicBlock(64, 64).eval()
    nn.init.zeros_(block.bn2.weight)
    x = torch.relu(torch.randn(2, 64, 8, 8))
    assert torch.equal(block(x), x)


def test_zero_pad_shortcut_subsamples_and_pads():
    down = make_downsample(64, 128, 2, "zero_pad")
    x = torch.randn(1, 64, 8, 8)
    y = down(x)
    assert y.shape == (1, 128, 4, 4)  # stride 2 halves 8x8; 64 channels padded to 128
    assert torch.equal(y[:, :64], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 64:]) == 0


def test_unknown_shortcut_is_refused():
    with pytest.raises(ValueError, match="projection"):
        get_model("resnet18", shortcut="conv1_weight")


@pytest.mark.parametrize("name", list(EXPECTED))
@pytest.mark.parametrize("n", [1, 3])
def test_forward_gives_logits_of_shape_n_by_10(name, n):
    torch.manual_seed(0)
    model = get_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(n, 1, 28, 28))
    assert out.shape == (n, 10)
    # Logits, not log-probabilities: log-softmax rows would logsumexp to 0.
    assert not torch.allclose(out.logsumexp(1), torch.zeros(n), atol=1e-3)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_builders_take_channels_and_classes(name):
    model = get_model(name, in_channels=3, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 28, 28)).shape == (2, 7)


def test_googlenet_batch_norm_variant_is_torchvisions_unit_everywhere():
    plain, bn = get_model("googlenet"), get_model("googlenet", batch_norm=True)
    convs = [m for m in bn.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in bn.modules() if isinstance(m, nn.BatchNorm2d)]
    # One BN per conv, of the conv's width; no conv keeps a bias; no LRN left.
    assert [c.out_channels for c in convs] == [b.num_features for b in norms]
    assert all(c.bias is None for c in convs) and all(b.eps == 0.001 for b in norms)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in bn.modules())
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in plain.modules()) == 2
    # Each conv trades its bias (cout) for BN's weight and bias (2 cout):
    # cout more parameters per conv, over the 57 convs (3 in the stem, 6 in
    # each of the 9 modules).
    assert len(convs) == 3 + 6 * 9
    widths = sum(c.out_channels for c in convs)
    assert count_parameters(bn) == GOOGLENET + widths
    # The same shapes, layer for layer: the option changes the units only.
    x = torch.randn(2, 1, 28, 28)
    assert bn.eval()(x).shape == plain.eval()(x).shape == (2, 10)


def test_dropout_argument_reaches_the_layers():
    model = get_model("googlenet", dropout=0.4)
    rates = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    assert rates == {0.4}


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_model("lenet5")
    for name in EXPECTED:
        assert name in str(err.value)
    assert str(err.value).startswith("unknown model 'lenet5'")  # no KeyError's extra quotes


def test_in_mode_restores_the_mode_even_when_the_block_raises():
    from cnnlab.models import eval_mode, in_mode

    model = get_model("lenet").train()
    with eval_mode(model) as m:
        assert m is model and not model.training
    assert model.training
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            raise RuntimeError("a failing forward pass")
    assert model.training
    model.eval()
    with in_mode(model, training=True):
        assert model.training
    assert not model.training


def _muted(block):
    with torch.no_grad():
        block.bn2.weight.zero_()  # F(x) = 0: only the shortcut is left
    return block


def test_reuse_conv1_is_the_reports_block_and_has_option_as_count():
    import torch.nn.functional as F

    from cnnlab.models.resnet import ReuseConv1Block

    model = get_model("resnet18", shortcut="reuse_conv1")
    # The report's count: its shortcut reused conv1, so it adds no weights.
    assert count_parameters(model) == resnet18_count(projection=False) == 11_001_546
    down = [b for b in model.modules() if isinstance(b, ReuseConv1Block)
            and b.changes_shape]
    assert len(down) == 3  # the first blocks of stages 2, 3 and 4
    torch.manual_seed(0)
    x = torch.rand(2, 64, 14, 14)
    block = _muted(model.layer2[0])
    expected = F.relu(F.conv2d(x, block.conv1.weight, stride=2, padding=1))
    assert torch.equal(block(x), expected)
    # Same-shape blocks keep the identity: x >= 0, so relu(x) == x.
    assert torch.equal(_muted(model.layer1[0])(x), x)
    # Tied weights: with F muted, conv1 still gets a gradient via the shortcut.
    block.zero_grad()
    block(x).sum().backward()
    assert block.conv1.weight.grad.norm() > 0
    options = [get_model("resnet18", shortcut=s).layer2[0] for s in ("zero_pad", "projection")]
    for b in options:
        _muted(b)(x).sum().backward()
        assert b.conv1.weight.grad is None or b.conv1.weight.grad.norm() == 0


@pytest.mark.parametrize("bad", [{"in_channels": 0}, {"num_classes": -3}, {"upsample": 0},
                                 {"upsample": 1.5}, {"num_classes": True}])
def test_sizes_that_are_not_positive_integers_are_refused(bad):
    (key, value), = bad.items()
    with pytest.raises(ValueError, match=f"{key} must be a positive integer, got {value!r}"):
        get_model("resnet18", **bad)
