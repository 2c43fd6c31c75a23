"""The models against independent oracles, output for output.

* ResNet-18 against torchvision's ``resnet18`` with the weights copied, in
  training and in eval mode (for every shortcut option, torchvision's net
  gets the matching shortcut written here).
* AlexNet at 224 px against torchvision's ``alexnet`` with the paper's
  widths put back and the weights copied.
* LeNet, the reduced AlexNet, MobileNetV1 and GoogLeNet, which have no
  reference implementation, against a forward pass written here from the
  papers' equations with ``torch.nn.functional``, using the model's own
  weights; and one Inception module and one depthwise-separable block on
  their own.
* Every model's layer order against the paper's sequence, traced from the
  leaf modules (and the functional ops between them) that actually run
  during a forward pass, not from names or labels.

Weights are taken "by structure": the parameterised layers in the order
the model registers them, each checked for its kind, all of them used.
"""
import copy
import types

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnlab.models import get_model

# BatchNorm's and LRN's settings as the papers and PyTorch give them
# (Ioffe & Szegedy 2015 use a small eps; 1e-5 and a running-average
# momentum of 0.1 are PyTorch's, which torchvision's nets use too).
BN_EPS, BN_MOMENTUM = 1e-5, 0.1
# LRN as in AlexNet's section 3.3 (n = 5, alpha = 1e-4, beta = 0.75) with
# PyTorch's k = 1 (the paper's k = 2) and PyTorch's alpha / n in the sum (the
# paper's is alpha): nn.LocalResponseNorm(5)'s defaults.
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)
# Float32 reassociation between two correct implementations stays far
# below this; every real slip (a missing ReLU, a swapped branch, BN in the
# wrong mode) moves the logits by more than 1e-2.
TOL = dict(rtol=1e-4, atol=1e-5)


# --- helpers ------------------------------------------------------------------

PARAMETERISED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


class Weights:
    """The model's parameterised layers, handed out in registration order."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, PARAMETERISED)]
        self.used = 0

    def take(self, kind: type) -> nn.Module:
        assert self.used < len(self.layers), "the model has fewer layers than the paper"
        layer = self.layers[self.used]
        assert isinstance(layer, kind), f"layer {self.used}: {layer} is not a {kind.__name__}"
        self.used += 1
        return layer

    def all_used(self) -> None:
        assert self.used == len(self.layers), (
            f"the model has {len(self.layers) - self.used} parameterised layers "
            f"the paper's forward pass never used")


def conv(x, m: nn.Conv2d, stride: int = 1, groups: int = 1):
    """A conv with "same" padding (k // 2), as every conv here but the stems' and LeNet's."""
    return F.conv2d(x, m.weight, m.bias, stride, m.weight.shape[-1] // 2, groups=groups)


def bn(x, m: nn.BatchNorm2d, training: bool):
    # Training: the batch's statistics, and the running averages updated in
    # place (they belong to a copy of the model, compared afterwards).
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias,
                        training, BN_MOMENTUM, BN_EPS)


def randomise_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN a non-trivial scale, shift and running statistics.

    With the default (1, 0, mean 0, var 1) an eval-mode BN is the identity,
    and a BN moved after its ReLU would go unnoticed.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return model


def running_stats(model: nn.Module) -> list:
    """BN's running means and variances (F.batch_norm does not count batches)."""
    return [t for m in model.modules() if isinstance(m, nn.BatchNorm2d)
            for t in (m.running_mean, m.running_var)]


def copy_by_structure(source: nn.Module, target: nn.Module) -> None:
    """Copy weights layer by layer in registration order, kinds and shapes checked."""
    src = [m for m in source.modules() if isinstance(m, PARAMETERISED)]
    dst = [m for m in target.modules() if isinstance(m, PARAMETERISED)]
    assert len(src) == len(dst), (len(src), len(dst))
    for a, b in zip(src, dst):
        assert type(a) is type(b), (a, b)
        b.load_state_dict(a.state_dict())  # strict: the same shapes, bias or not


def same_in_both_modes(model: nn.Module, reference, x: torch.Tensor,
                       reference_input=None) -> None:
    """Eval mode, then training mode (dropout masks drawn from the same seed,
    BN on batch statistics), outputs and BN running statistics compared."""
    reference_input = x if reference_input is None else reference_input
    ref_model = reference if isinstance(reference, nn.Module) else None
    for training in (False, True):
        model.train(training)
        if ref_model is not None:
            ref_model.train(training)
        torch.manual_seed(1)
        ours = model(x)
        torch.manual_seed(1)
        theirs = reference(reference_input) if ref_model is not None else reference(training)
        torch.testing.assert_close(ours, theirs, **TOL, msg=lambda m: f"training={training}: {m}")


# --- ResNet-18 against torchvision ------------------------------------------------

def torchvision_resnet18(shortcut: str = "projection") -> nn.Module:
    """torchvision's ResNet-18 with cnnlab's documented adaptations.

    A 1-channel stem (same 7x7 stride-2 conv, BN, ReLU, 3x3 max-pool), 10
    classes, and dropout before the classifier; the shortcut where a block
    changes shape written here from the paper (He et al. 2016, section 3.3).
    """
    ref = torchvision.models.resnet18(num_classes=10)
    ref.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    ref.fc = nn.Sequential(nn.Dropout(0.5), nn.Linear(512, 10))  # the report's dropout, 0.5
    for stage in (ref.layer2, ref.layer3, ref.layer4):
        first = stage[0]
        if shortcut == "zero_pad":
            first.downsample = OptionA(first.conv1.in_channels, first.conv1.out_channels)
        elif shortcut == "reuse_conv1":
            first.downsample = ReuseConv1(first.conv1)
        elif shortcut == "none":
            first.downsample = None
    if shortcut == "none":
        for m in ref.modules():
            if isinstance(m, torchvision.models.resnet.BasicBlock):
                m.forward = types.MethodType(plain_forward, m)
    return ref


class OptionA(nn.Module):
    """Option A: every second pixel, then the new channels as zeros."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.extra = cout - cin

    def forward(self, x):
        x = x[:, :, ::2, ::2]
        zeros = x.new_zeros(x.shape[0], self.extra, *x.shape[2:])
        return torch.cat([x, zeros], dim=1)


class ReuseConv1(nn.Module):
    """The report's shortcut: the block's own conv1 weights (not registered
    here, so the weights stay tied and counted once)."""

    def __init__(self, conv1: nn.Conv2d) -> None:
        super().__init__()
        self.conv1 = [conv1]

    def forward(self, x):
        c = self.conv1[0]
        return F.conv2d(x, c.weight, stride=c.stride, padding=1)


def plain_forward(self, x):
    """The paper's plain net: the same two convs, nothing added back."""
    out = F.relu(self.bn1(self.conv1(x)))
    return F.relu(self.bn2(self.conv2(out)))


@pytest.mark.parametrize("shortcut", ["projection", "zero_pad", "reuse_conv1", "none"])
def test_resnet18_matches_torchvision_output_for_output(shortcut):
    torch.manual_seed(0)
    ours = randomise_batch_norm(get_model("resnet18", shortcut=shortcut, upsample=1))
    ref = torchvision_resnet18(shortcut)
    copy_by_structure(ours, ref)
    x = torch.randn(4, 1, 28, 28)
    same_in_both_modes(ours, ref, x)
    # The training pass updated BN's running averages identically.
    for a, b in zip(running_stats(ours), running_stats(ref)):
        torch.testing.assert_close(a, b, **TOL)
    if shortcut not in ("projection", "reuse_conv1"):  # reuse_conv1: tied weights
        return  # the other blocks' gradients are the same code as projection's
    # And the gradients agree: the same function, not only the same values.
    for model in (ours, ref):
        model.train()
        torch.manual_seed(2)
        F.cross_entropy(model(x), torch.arange(4)).backward()
    grads = [(p.grad, q.grad) for p, q in zip(ours.parameters(), ref.parameters())]
    assert len(grads) == len(list(ours.parameters()))
    for g, h in grads:  # a looser rtol: gradients sum over the batch and every layer above
        torch.testing.assert_close(g, h, rtol=1e-3, atol=1e-5)


def test_resnet18_upsamples_bilinearly_before_the_stem():
    # The default model sees the digit at 56 px: torchvision's net on the
    # bilinearly upsampled input (align_corners=False) is the oracle.
    torch.manual_seed(0)
    ours = randomise_batch_norm(get_model("resnet18"))
    ref = torchvision_resnet18()
    copy_by_structure(ours, ref)
    x = torch.randn(2, 1, 28, 28)
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    same_in_both_modes(ours, ref, x, reference_input=up)


# --- AlexNet at 224 px against torchvision -------------------------------------

def test_alexnet_large_matches_torchvision_with_the_papers_widths():
    # torchvision's alexnet follows the "one weird trick" widths (64-192-384-
    # 256-256); the paper's single-GPU equivalent is 96-256-384-384-256
    # (Krizhevsky et al. 2012, figure 2, the two halves put together).
    ref = torchvision.models.alexnet(num_classes=10)
    ref.features[0] = nn.Conv2d(1, 96, 11, stride=4, padding=2)
    ref.features[3] = nn.Conv2d(96, 256, 5, padding=2)
    ref.features[6] = nn.Conv2d(256, 384, 3, padding=1)
    ref.features[8] = nn.Conv2d(384, 384, 3, padding=1)
    ref.features[10] = nn.Conv2d(384, 256, 3, padding=1)
    ref.classifier[1] = nn.Linear(256 * 6 * 6, 4096)
    torch.manual_seed(0)
    ours = get_model("alexnet_large")
    copy_by_structure(ours, ref)
    x = torch.rand(1, 1, 28, 28)
    up = F.interpolate(x, scale_factor=8, mode="bilinear", align_corners=False)  # 224 px
    # Eval mode only: the classifier's dropout in training mode is the same
    # code as the reduced AlexNet's, checked in both modes below.
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref.eval()(up), **TOL)


# --- Hand-written forward passes ------------------------------------------------

@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_lenet_is_the_papers_forward_pass(activation):
    torch.manual_seed(0)
    model = get_model("lenet", activation=activation)
    act = torch.sigmoid if activation == "sigmoid" else F.relu

    def by_hand(training):
        w = Weights(model)
        c1, c3 = w.take(nn.Conv2d), w.take(nn.Conv2d)
        c5, f6, out = w.take(nn.Linear), w.take(nn.Linear), w.take(nn.Linear)
        w.all_used()
        h = F.max_pool2d(act(F.conv2d(x, c1.weight, c1.bias)), 2)  # C1 5x5: 28 -> 24, S2: 12
        h = F.max_pool2d(act(F.conv2d(h, c3.weight, c3.bias)), 2)  # C3 5x5: 12 -> 8, S4: 4
        h = h.reshape(len(h), 16 * 4 * 4)
        h = act(F.linear(h, c5.weight, c5.bias))                    # C5: 120 units
        h = act(F.linear(h, f6.weight, f6.bias))                    # F6: 84 units
        return F.linear(h, out.weight, out.bias)                    # 10 logits

    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        same_in_both_modes(model, by_hand, x)


def test_lenet_c1_is_a_sum_of_products():
    # One C1 output computed as the paper writes it, a 5x5 weighted sum plus a bias.
    torch.manual_seed(0)
    model = get_model("lenet")
    c1 = Weights(model).take(nn.Conv2d)
    x = torch.randn(1, 1, 28, 28)
    captured = {}
    c1.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    with torch.no_grad():
        model(x)
    k, i, j = 4, 10, 17  # any map, any position
    expected = (x[0, 0, i:i + 5, j:j + 5] * c1.weight[k, 0]).sum() + c1.bias[k]
    torch.testing.assert_close(captured["out"][0, k, i, j], expected, **TOL)


def test_alexnet_is_the_papers_forward_pass():
    torch.manual_seed(0)
    model = get_model("alexnet")

    def by_hand(training):
        w = Weights(model)
        h = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # 56 px
        h = F.max_pool2d(F.relu(conv(h, w.take(nn.Conv2d))), 2)   # 5x5, 48: 28 px
        h = F.max_pool2d(F.relu(conv(h, w.take(nn.Conv2d))), 2)   # 5x5, 128: 14 px
        h = F.relu(conv(h, w.take(nn.Conv2d)))                     # 3x3, 192
        h = F.relu(conv(h, w.take(nn.Conv2d)))                     # 3x3, 192
        h = F.max_pool2d(F.relu(conv(h, w.take(nn.Conv2d))), 2)   # 3x3, 128: 7 px
        h = h.flatten(1)                                           # 128 * 7 * 7
        for _ in range(2):  # dropout in the first two fully connected layers
            fc = w.take(nn.Linear)
            h = F.relu(F.linear(F.dropout(h, 0.5, training), fc.weight, fc.bias))
        fc = w.take(nn.Linear)
        w.all_used()
        return F.linear(h, fc.weight, fc.bias)

    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        same_in_both_modes(model, by_hand, x)


# MobileNetV1, Howard et al. 2017, Table 1 after the first conv: per
# depthwise-separable block, (stride of the depthwise conv, output channels).
# The paper's table prints "s2" for the second-last block, a known typo:
# its input and output are both 7x7, so the stride is 1.
MOBILENET_TABLE = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
                   (1, 512), (1, 512), (1, 512), (1, 512), (1, 512),
                   (2, 1024), (1, 1024)]


def separable_by_hand(x, w: Weights, stride: int, training: bool):
    dw = w.take(nn.Conv2d)
    x = F.relu(bn(F.conv2d(x, dw.weight, None, stride, 1, groups=x.shape[1]),
                  w.take(nn.BatchNorm2d), training))  # 3x3, one filter per channel
    pw = w.take(nn.Conv2d)
    return F.relu(bn(F.conv2d(x, pw.weight), w.take(nn.BatchNorm2d), training))  # 1x1


def test_mobilenet_v1_is_the_papers_forward_pass():
    torch.manual_seed(0)
    model = randomise_batch_norm(get_model("mobilenet_v1"))
    twin = copy.deepcopy(model)  # its BN running averages move with the hand-written pass

    def by_hand(training):
        w = Weights(twin)
        h = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # 56 px
        stem = w.take(nn.Conv2d)
        h = F.relu(bn(F.conv2d(h, stem.weight, None, 2, 1), w.take(nn.BatchNorm2d), training))
        for stride, _ in MOBILENET_TABLE:
            h = separable_by_hand(h, w, stride, training)
        assert h.shape[1] == MOBILENET_TABLE[-1][1]
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)  # global average pool
        fc = w.take(nn.Linear)
        w.all_used()
        return F.linear(F.dropout(h, 0.5, training), fc.weight, fc.bias)  # the report's 0.5

    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        same_in_both_modes(model, by_hand, x)
    for a, b in zip(running_stats(model), running_stats(twin)):  # the training pass's updates
        torch.testing.assert_close(a, b, **TOL)


def test_one_depthwise_separable_block_by_hand():
    from cnnlab.models.mobilenet import DepthwiseSeparable

    torch.manual_seed(0)
    block = randomise_batch_norm(DepthwiseSeparable(8, 16, stride=2))
    twin = copy.deepcopy(block)
    # One 3x3 filter per input channel, then a 1x1 mix: 8*9 + 8*16 weights.
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(8, 1, 3, 3), (16, 8, 1, 1)]
    assert all(c.bias is None for c in convs)  # BN follows each: no conv bias
    x = torch.randn(2, 8, 6, 6)

    def by_hand(training):
        w = Weights(twin)
        out = separable_by_hand(x, w, 2, training)
        w.all_used()
        return out

    with torch.no_grad():
        same_in_both_modes(block, by_hand, x)
    assert block(x).shape == (2, 16, 3, 3)  # stride 2 on the depthwise conv


def inception_by_hand(x, w: Weights):
    """Szegedy et al. 2015, figure 2(b): four branches, concatenated in this order."""
    b1 = F.relu(conv(x, w.take(nn.Conv2d)))                              # 1x1
    b2 = F.relu(conv(F.relu(conv(x, w.take(nn.Conv2d))), w.take(nn.Conv2d)))  # 1x1 -> 3x3
    b3 = F.relu(conv(F.relu(conv(x, w.take(nn.Conv2d))), w.take(nn.Conv2d)))  # 1x1 -> 5x5
    b4 = F.relu(conv(F.max_pool2d(x, 3, 1, padding=1), w.take(nn.Conv2d)))    # pool -> 1x1
    return torch.cat([b1, b2, b3, b4], dim=1)


def test_one_inception_module_is_its_four_branches_concatenated():
    from cnnlab.models.googlenet import Inception

    torch.manual_seed(0)
    module = Inception(6, 2, 3, 4, 2, 3, 5)
    x = torch.randn(2, 6, 5, 5)
    w = Weights(module)
    with torch.no_grad():
        expected = inception_by_hand(x, w)
        got = module(x)
    w.all_used()
    assert got.shape == (2, 2 + 4 + 3 + 5, 5, 5)  # 1x1 + 3x3 + 5x5 + pool proj
    torch.testing.assert_close(got, expected, **TOL)
    # The 5x5 branch is a true 5x5 conv (torchvision's copy uses 3x3 there).
    assert [m.kernel_size for m in module.modules() if isinstance(m, nn.Conv2d)] == [
        (1, 1), (1, 1), (3, 3), (1, 1), (5, 5), (1, 1)]


# GoogLeNet's Table 1, typed from the paper: cin, #1x1, #3x3 reduce, #3x3,
# #5x5 reduce, #5x5, pool proj; a max-pool after 3b and 4e.
GOOGLENET_TABLE = [
    ("3a", 192, 64, 96, 128, 16, 32, 32), ("3b", 256, 128, 128, 192, 32, 96, 64),
    ("4a", 480, 192, 96, 208, 16, 48, 64), ("4b", 512, 160, 112, 224, 24, 64, 64),
    ("4c", 512, 128, 128, 256, 24, 64, 64), ("4d", 512, 112, 144, 288, 32, 64, 64),
    ("4e", 528, 256, 160, 320, 32, 128, 128), ("5a", 832, 256, 160, 320, 32, 128, 128),
    ("5b", 832, 384, 192, 384, 48, 128, 128),
]
POOL_AFTER = {"3b", "4e"}


def test_googlenet_is_the_papers_forward_pass():
    torch.manual_seed(0)
    model = get_model("googlenet")

    def pool(h):  # 3x3 stride 2, rounding up (cnnlab's unpadded adaptation to 56 px)
        return F.max_pool2d(h, 3, 2, ceil_mode=True)

    def by_hand(training):
        w = Weights(model)
        h = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # 56 px
        c = w.take(nn.Conv2d)
        h = pool(F.relu(F.conv2d(h, c.weight, c.bias, 2, 3)))        # 7x7/2: 28, pool: 14
        h = F.local_response_norm(h, **LRN)
        h = F.relu(conv(h, w.take(nn.Conv2d)))                       # 1x1, 64
        h = F.relu(conv(h, w.take(nn.Conv2d)))                       # 3x3, 192
        h = pool(F.local_response_norm(h, **LRN))                    # 7
        for name, cin, *_ in GOOGLENET_TABLE:
            assert h.shape[1] == cin, name
            h = inception_by_hand(h, w)
            if name in POOL_AFTER:
                h = pool(h)
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)                   # 1024
        fc = w.take(nn.Linear)
        w.all_used()
        # the report's dropout, 0.2 (the paper's is 0.4)
        return F.linear(F.dropout(h, 0.2, training), fc.weight, fc.bias)

    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        same_in_both_modes(model, by_hand, x)


# --- Layer order, traced ---------------------------------------------------------

class _Functional(TorchFunctionMode):
    """Records the torch functions called outside any leaf module."""

    def __init__(self, trace: list, depth: list) -> None:
        super().__init__()
        self.trace, self.depth = trace, depth

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        if not self.depth[0]:
            name = getattr(func, "__name__", str(func))
            name = FUNCTION_NAMES.get(name, name)
            if name not in IGNORED:
                self.trace.append(name)
        return func(*args, **(kwargs or {}))


FUNCTION_NAMES = {"relu": "relu", "relu_": "relu", "add": "add", "__add__": "add",
                  "__iadd__": "add", "add_": "add", "cat": "cat", "flatten": "flatten",
                  "pad": "pad", "conv2d": "conv2d (functional)", "__getitem__": "slice",
                  "sigmoid": "sigmoid"}
IGNORED = {"__get__", "size", "dim", "__len__", "new_zeros"}


def describe(m: nn.Module):
    """A leaf module as the paper would name it, with its hyper-parameters."""
    one = lambda v: v if isinstance(v, int) else v[0]  # noqa: E731  (k, k) -> k
    if isinstance(m, nn.Conv2d):
        return ("conv", m.in_channels, m.out_channels, one(m.kernel_size), one(m.stride),
                one(m.padding), m.groups, m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return ("bn", m.num_features)
    if isinstance(m, nn.MaxPool2d):
        return ("maxpool", one(m.kernel_size), one(m.stride), one(m.padding), m.ceil_mode)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return ("global avgpool", one(m.output_size))
    if isinstance(m, nn.Linear):
        return ("fc", m.in_features, m.out_features)
    if isinstance(m, nn.Dropout):
        return ("dropout", m.p)
    if isinstance(m, nn.Upsample):
        return ("upsample", m.scale_factor, m.mode)
    if isinstance(m, nn.LocalResponseNorm):
        return ("lrn", m.size, m.alpha, m.beta, m.k)
    simple = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Flatten: "flatten"}
    return simple.get(type(m), type(m).__name__)


def trace(model: nn.Module, size: int = 28) -> list:
    """What runs, in order, during one forward pass: PyTorch's leaf modules
    (described by their settings) and the functional ops between them."""
    events, depth, handles = [], [0], []

    def enter(m, args):
        depth[0] += 1

    def leave(m, args, out):
        depth[0] -= 1
        events.append(describe(m))

    for m in model.modules():
        if next(m.children(), None) is None and type(m).__module__.startswith("torch.nn"):
            handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    x = torch.randn(2, 1, size, size)
    try:
        with torch.no_grad(), _Functional(events, depth):
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return events


def c(cin, cout, k, stride=1, padding=0, groups=1, bias=True):
    return ("conv", cin, cout, k, stride, padding, groups, bias)


def lenet_paper(act="sigmoid"):
    # LeCun et al. 1998: C1 5x5 6 maps, S2, C3 5x5 16 maps, S4, C5 120, F6 84, output.
    return [c(1, 6, 5), act, ("maxpool", 2, 2, 0, False),
            c(6, 16, 5), act, ("maxpool", 2, 2, 0, False),
            "flatten", ("fc", 16 * 4 * 4, 120), act, ("fc", 120, 84), act, ("fc", 84, 10)]


def classifier_paper(features):
    # Krizhevsky et al. 2012, section 4.2: dropout in the first two FC layers.
    return ["flatten", ("dropout", 0.5), ("fc", features, 4096), "relu",
            ("dropout", 0.5), ("fc", 4096, 4096), "relu", ("fc", 4096, 10)]


def alexnet_paper():
    pool = ("maxpool", 2, 2, 0, False)  # cnnlab's 2x2 pools: 56 -> 28 -> 14 -> 7
    return ([("upsample", 2, "bilinear"), c(1, 48, 5, 1, 2), "relu", pool,
             c(48, 128, 5, 1, 2), "relu", pool, c(128, 192, 3, 1, 1), "relu",
             c(192, 192, 3, 1, 1), "relu", c(192, 128, 3, 1, 1), "relu", pool]
            + classifier_paper(128 * 7 * 7))


def alexnet_large_paper():
    pool = ("maxpool", 3, 2, 0, False)  # the paper's overlapping pools
    return ([("upsample", 8, "bilinear"), c(1, 96, 11, 4, 2), "relu", pool,
             c(96, 256, 5, 1, 2), "relu", pool, c(256, 384, 3, 1, 1), "relu",
             c(384, 384, 3, 1, 1), "relu", c(384, 256, 3, 1, 1), "relu", pool]
            + classifier_paper(256 * 6 * 6))


def resnet18_paper(shortcut="projection", adapted=True):
    """He et al. 2016, table 1 (18-layer) and figure 2: conv-BN-ReLU-conv-BN,
    the shortcut, the addition, then the ReLU. ``adapted``: cnnlab's x2
    upsampling in front and dropout before the FC layer."""
    seq = [("upsample", 2, "bilinear")] if adapted else []
    seq += [c(1, 64, 7, 2, 3, bias=False), ("bn", 64), "relu", ("maxpool", 3, 2, 1, False)]
    cin = 64
    for width in (64, 128, 256, 512):
        for block in range(2):
            stride = 2 if block == 0 and width != 64 else 1
            seq += [c(cin, width, 3, stride, 1, bias=False), ("bn", width), "relu",
                    c(width, width, 3, 1, 1, bias=False), ("bn", width)]
            if shortcut == "none":
                seq += ["relu"]
                cin = width
                continue
            if cin != width:  # the shape changes: this shortcut is not the identity
                seq += {"projection": [c(cin, width, 1, 2, 0, bias=False), ("bn", width)],
                        "zero_pad": ["slice", "pad"],
                        "reuse_conv1": ["conv2d (functional)"]}[shortcut]
            seq += ["add", "relu"]
            cin = width
    seq += [("global avgpool", 1), "flatten"]
    return seq + ([("dropout", 0.5)] if adapted else []) + [("fc", 512, 10)]


def mobilenet_paper():
    seq = [("upsample", 2, "bilinear"), c(1, 32, 3, 2, 1, bias=False), ("bn", 32), "relu"]
    cin = 32
    for stride, cout in MOBILENET_TABLE:
        seq += [c(cin, cin, 3, stride, 1, groups=cin, bias=False), ("bn", cin), "relu",
                c(cin, cout, 1, bias=False), ("bn", cout), "relu"]
        cin = cout
    # dropout: the report's 0.5
    return seq + [("global avgpool", 1), "flatten", ("dropout", 0.5), ("fc", 1024, 10)]


def googlenet_paper():
    pool = ("maxpool", 3, 2, 0, True)
    lrn = ("lrn", LRN["size"], LRN["alpha"], LRN["beta"], LRN["k"])
    seq = [("upsample", 2, "bilinear"), c(1, 64, 7, 2, 3), "relu", pool, lrn,
           c(64, 64, 1), "relu", c(64, 192, 3, 1, 1), "relu", lrn, pool]
    for name, cin, c1, c3r, c3, c5r, c5, pp in GOOGLENET_TABLE:
        seq += [c(cin, c1, 1), "relu",
                c(cin, c3r, 1), "relu", c(c3r, c3, 3, 1, 1), "relu",
                c(cin, c5r, 1), "relu", c(c5r, c5, 5, 1, 2), "relu",
                ("maxpool", 3, 1, 1, False), c(cin, pp, 1), "relu", "cat"]
        if name in POOL_AFTER:
            seq.append(pool)
    # the report's dropout, 0.2 (the paper's is 0.4)
    return seq + [("global avgpool", 1), "flatten", ("dropout", 0.2), ("fc", 1024, 10)]


PAPER = {
    "lenet": lenet_paper,
    "alexnet": alexnet_paper,
    "alexnet_large": alexnet_large_paper,
    "resnet18": resnet18_paper,
    "mobilenet_v1": mobilenet_paper,
    "googlenet": googlenet_paper,
}


def assert_same_sequence(got: list, expected: list) -> None:
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"step {i}: ran {g}, the paper has {e} (before it: {got[max(0, i - 3):i]})"
    assert len(got) == len(expected), (
        f"{len(got)} steps ran, the paper has {len(expected)}; "
        f"extra: {got[len(expected):][:5] or expected[len(got):][:5]}")


@pytest.mark.parametrize("name", list(PAPER))
def test_layer_order_is_the_papers(name):
    assert_same_sequence(trace(get_model(name)), PAPER[name]())


@pytest.mark.parametrize("shortcut", ["zero_pad", "reuse_conv1", "none"])
def test_resnet18_layer_order_for_every_shortcut(shortcut):
    assert_same_sequence(trace(get_model("resnet18", shortcut=shortcut)),
                         resnet18_paper(shortcut))


def test_lenet_relu_variant_changes_only_the_activation():
    assert_same_sequence(trace(get_model("lenet", activation="relu")), lenet_paper("relu"))


def test_the_resnet_sequence_written_here_is_torchvisions():
    # The hand-written sequence, checked once against an independent net.
    ref = torchvision.models.resnet18(num_classes=10)
    ref.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    assert_same_sequence(trace(ref), resnet18_paper(adapted=False))


@pytest.mark.parametrize("name", ["alexnet", "alexnet_large", "resnet18", "mobilenet_v1",
                                  "googlenet"])
def test_the_dropout_argument_reaches_every_dropout_layer(name):
    # Built on the meta device: only the layers' settings are read.
    with torch.device("meta"):
        model = get_model(name, dropout=0.37)
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert rates and set(rates) == {0.37}


def test_resnet_convs_start_from_he_initialisation_fan_out():
    # He et al. 2015 (as torchvision): N(0, 2 / fan_out), fan_out = cout * k * k.
    # The stem tells fan_out (64 * 7 * 7) from fan_in (1 * 7 * 7) apart: std
    # 0.025 against 0.20. BN starts as the identity: scale 1, shift 0.
    torch.manual_seed(0)
    model = get_model("resnet18")
    stem = Weights(model).take(nn.Conv2d)
    fan_out = 64 * 7 * 7
    # rel 0.1: the std of 3,136 weights strays by about 1.3% (1 / sqrt(2 * 3136)).
    assert stem.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
