"""The chapter 4 (ResNet-18) checkers reject plausible wrong answers with a specific
message, and accept right answers written differently.

(tests/test_exercise_registry.py runs every checker on the notebooks'
solution, stub and a None answer.) Some tests use the solution notebook's
answers, as the ``solution`` fixture gives them.
"""

import pytest
from exercise_cells import verdict
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.exercises.resnet import check_basic_block, check_batch_norm, check_smallest_upsample

NOTEBOOK = "04_resnet.ipynb"


# Plausible wrong blocks. Each has conv1, bn1, conv2, bn2 as the exercise asks.

class _Residual(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.same = stride, stride == 1 and cin == cout

    def residual(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class AlwaysAddsX(_Residual):
    """Bug 2 of the report: adds x whatever shape F(x) has."""

    def forward(self, x):
        return F.relu(self.residual(x) + x)


class ReportFix(_Residual):
    """The report's fix: the shortcut convolves x with conv1's own weights."""

    def forward(self, x):
        shortcut = x if self.same else F.conv2d(x, self.conv1.weight,
                                                stride=self.stride, padding=1)
        return F.relu(self.residual(x) + shortcut)


class ProjectsEverywhere(_Residual):
    """A 1x1 conv + BN on every shortcut, also where the shape stays the same."""

    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                        nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.residual(x) + self.downsample(x))


class ZeroPads(_Residual):
    """The paper's option A (no parameters), where the exercise asks for option B."""

    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.extra = cout - cin

    def forward(self, x):
        shortcut = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))
        return F.relu(self.residual(x) + shortcut)


class FrozenStatistics(_Residual):
    """Right layers, but BatchNorm always on its running statistics, as the
    frozen BN of detection code does: the same as the paper's block in eval
    mode, not in training (where BN normalises with the batch's own)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        if not self.same:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    @staticmethod
    def frozen(bn, x):
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                            training=False, eps=bn.eps)

    def forward(self, x):
        out = F.relu(self.frozen(self.bn1, self.conv1(x)))
        out = self.frozen(self.bn2, self.conv2(out))
        shortcut = x if self.same else self.frozen(self.downsample[1], self.downsample[0](x))
        return F.relu(out + shortcut)


@pytest.mark.parametrize("wrong, message", [
    (AlwaysAddsX, "x cannot be added as it is"),
    (ReportFix, "your shortcut reuses conv1's weights, which is the report's fix"),
    (ProjectsEverywhere, "must return relu(x) exactly"),
    (ZeroPads, "this exercise asks for the paper's option B"),
    (FrozenStatistics, "differs from the package's block in train mode"),
])
def test_basic_block_rejects_wrong_blocks(capsys, wrong, message):
    assert check_basic_block(wrong) is False
    out = verdict(capsys)
    assert out.startswith("✗ BasicBlock with a projection shortcut: ")
    assert message in out


def test_basic_block_shape_message_names_the_shapes(capsys):
    check_basic_block(AlwaysAddsX)
    out = capsys.readouterr().out
    assert "MyBasicBlock(64, 128, stride=2)" in out
    # The checker's batch: 2 images of 64 channels, 8x8; stride 2 halves 8 to 4.
    assert "F(x) is (2, 128, 4, 4) but x is (2, 64, 8, 8)" in out


def test_basic_block_check_leaves_the_callers_torch_alone(solution):
    torch.manual_seed(123)
    expected = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    check_basic_block(solution["MyBasicBlock"])
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads and torch.is_grad_enabled()


def layer_size(layer: str, factor: int) -> int:
    """Side of a stage's square output map, measured on the package's model."""
    from cnnlab.models import get_model
    with torch.device("meta"):
        model = get_model("resnet18", upsample=factor)
    sizes = []
    getattr(model, layer).register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    model.eval()
    model(torch.zeros(1, 1, 28, 28, device="meta"))
    return sizes[0]


def strictly_larger(min_size=2):
    """'At least' read as 'larger than'."""
    factor = 1
    while layer_size("layer4", factor) <= min_size:
        factor += 1
    return factor


def _smallest(min_size):
    factor = 1
    while layer_size("layer4", factor) < min_size:
        factor += 1
    return factor


def measures_layer3(min_size=2):
    factor = 1
    while layer_size("layer3", factor) < min_size:
        factor += 1
    return factor


@pytest.mark.parametrize("wrong, message", [
    # x1: 28 px -> 14 (stem) -> 7 (pool) -> 7, 4, 2, 1: layer4 is already 1x1.
    (lambda min_size=2: 2, "smallest_upsample_for_resnet(1): expected 1, got 2"),
    # x8: 224 px, halved five times -> 7x7 at layer4; x9: 252 px -> 126, 63, 32, 16, 8.
    (lambda min_size=2: min_size, "smallest_upsample_for_resnet(8): expected 9, got 8. "
     "Hint: at x8 (224 px) layer4's maps are 7x7; x9 is the first factor that gives at "
     "least 8x8 (8x8). Measure layer4's output for f = 1, 2, 3, ..."),
    (strictly_larger, "'at least' means >=, not >"),
    (measures_layer3, "measure layer4's output, not layer3's."),
    (lambda min_size=2: _smallest(min_size) - 1, "one less than the smallest factor"),
    (lambda min_size=2: 2.0, "returned 2.0 (float); return an int"),
])
def test_smallest_upsample_rejects_wrong_answers(capsys, wrong, message):
    assert check_smallest_upsample(wrong) is False
    out = verdict(capsys)
    assert out.startswith("✗ smallest upsampling factor for ResNet-18: ")
    assert message in out


# --- batch_norm -----------------------------------------------------------------

def _bn(unbiased_running=True, unbiased_norm=False, momentum_on_old=False, update=True,
        eval_uses_batch=False, per_tensor=False):
    # PyTorch's BatchNorm2d defaults: momentum 0.1 on the new batch, eps 1e-5.
    def batch_norm(x, gamma, beta, running_mean, running_var, training):
        shape, dims = (1, -1, 1, 1), (0, 2, 3)
        if training or eval_uses_batch:
            n = x.numel() // x.shape[1]
            if per_tensor:
                mean = x.mean().expand(x.shape[1])
                var = x.var(unbiased=False).expand(x.shape[1])
            else:
                mean = x.mean(dims)
                var = x.var(dims, unbiased=False)
            var_running = var * n / (n - 1) if unbiased_running else var
            if unbiased_norm:
                var = var * n / (n - 1)
            if training and update:
                a, b = (0.1, 0.9) if momentum_on_old else (0.9, 0.1)
                running_mean.mul_(a).add_(b * mean)
                running_var.mul_(a).add_(b * var_running)
        else:
            mean, var = running_mean, running_var
        return (gamma.view(shape) * (x - mean.view(shape)) / torch.sqrt(var.view(shape) + 1e-5)
                + beta.view(shape))
    return batch_norm


def test_batch_norm_written_with_functional_batch_norm_passes(capsys):
    def via_functional(x, gamma, beta, running_mean, running_var, training):
        return torch.nn.functional.batch_norm(x, running_mean, running_var, gamma, beta,
                                              training=training)

    assert check_batch_norm(via_functional)
    assert check_batch_norm(_bn())
    assert capsys.readouterr().out.count("✓") == 2  # one per answer above


@pytest.mark.parametrize("slip, hint", [
    ({"unbiased_running": False}, "running_var must be updated with the UNBIASED"),
    ({"unbiased_norm": True}, "normalise with the BIASED batch variance"),
    ({"momentum_on_old": True}, "the momentum weighs the NEW batch"),
    ({"update": False}, "update running_mean and running_var in place"),
    ({"per_tensor": True}, "one mean and one variance PER CHANNEL"),
    ({"eval_uses_batch": True}, "In eval mode normalise with running_mean"),
])
def test_batch_norm_slips_get_a_hint_that_names_them(slip, hint, capsys):
    assert not check_batch_norm(_bn(**slip))
    out = capsys.readouterr().out
    assert hint in out and out.count("\n") == 1


# --- zero_pad_shortcut --------------------------------------------------------

def test_zeros_before_the_input_channels_are_option_a_too(capsys):
    from cnnlab.exercises.resnet import check_zero_pad_shortcut

    def zeros_first(x, cout, stride):
        kept = x[:, :, ::stride, ::stride]
        return torch.nn.functional.pad(kept, (0, 0, 0, 0, cout - x.shape[1], 0))

    assert check_zero_pad_shortcut(zeros_first)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, cout, s: torch.cat([torch.nn.functional.avg_pool2d(x, s, s, ceil_mode=True),
                                   x.new_zeros(x.shape[0], cout - x.shape[1],
                                               -(-x.shape[2] // s), -(-x.shape[3] // s))], 1),
     "you averaged the pixels"),
    (lambda x, cout, s: torch.cat([x[:, :, 1::s, 1::s], x.new_zeros(
        x.shape[0], cout - x.shape[1], x[:, :, 1::s, 1::s].shape[2], x[:, :, 1::s, 1::s].shape[3])], 1),
     "you kept the odd pixels"),
    (lambda x, cout, s: torch.cat([x[:, :, ::s, ::s]] * (cout // x.shape[1]), 1),
     "extra channels must be zeros"),
    (lambda x, cout, s: torch.nn.functional.pad(x, (0, 0, 0, 0, 0, cout - x.shape[1])),
     "expected"),
])
def test_zero_pad_shortcut_slips(wrong, hint, capsys):
    from cnnlab.exercises.resnet import check_zero_pad_shortcut
    assert not check_zero_pad_shortcut(wrong)
    out = capsys.readouterr().out
    assert hint in out and out.count("\n") == 1


# --- basic block: the identity chosen by one of stride and channels (issue 24) ----

class IdentityWhenStrideOne(_Residual):
    """Projects only where the map shrinks: "stride 1 means the identity"."""

    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.downsample = None if stride == 1 else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(self.residual(x) + shortcut)


class IdentityWhenChannelsMatch(IdentityWhenStrideOne):
    """Projects only where the channels change: "same channels, same shape"."""

    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.downsample = None if cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


@pytest.mark.parametrize("block, shapes", [
    # The checker's stride-1 block that doubles the channels (64 -> 128 on 8x8 maps) ...
    (IdentityWhenStrideOne, "F(x) is (2, 128, 8, 8) but x is (2, 64, 8, 8)"),
    # ... and its stride-2 block that keeps 64 channels (8x8 maps halve to 4x4).
    (IdentityWhenChannelsMatch, "F(x) is (2, 64, 4, 4) but x is (2, 64, 8, 8)"),
])
def test_basic_block_with_the_identity_chosen_by_one_condition_is_rejected(block, shapes,
                                                                          capsys):
    assert check_basic_block(block) is False
    out = verdict(capsys)
    assert shapes in out and "Where stride != 1 or cin != cout the shortcut must be" in out


# --- smallest upsampling factor: the floor-proportional answer (issue 24) -------------

def floor_proportional(min_size=2):
    # "layer4's side is the input's over 32": 28 * f // 32 >= min_size.
    factor = 1
    while 28 * factor // 32 < min_size:
        factor += 1
    return factor


def test_smallest_upsample_floor_proportional_is_told_about_rounding(capsys):
    # It agrees with "maps strictly bigger than min_size" on 1, 2, 4 and 8 (2, 3,
    # 5, 10); at 7 it gives 8, where "strictly bigger" gives 9 (and the truth is 7).
    assert check_smallest_upsample(floor_proportional) is False
    out = verdict(capsys)
    assert "28 * f / 32 rounded DOWN" in out and ">=, not >" not in out


def ceil_proportional(min_size=2):
    """A right answer written differently: each stride-2 layer rounds up, and
    ceil(ceil(n / 2) / 2) = ceil(n / 4), so layer4's side is ceil(28 * f / 32)."""
    factor = 1
    while -(-28 * factor // 32) < min_size:
        factor += 1
    return factor


def test_smallest_upsample_from_the_ceiling_formula_passes(capsys):
    assert check_smallest_upsample(ceil_proportional) is True
    assert verdict(capsys).startswith("✓")


# --- batch_norm: Bessel's correction, and dtypes (issue 24) ---------------------------

def bn_bessel_by_batch_size(x, gamma, beta, running_mean, running_var, training):
    shape, dims = (1, -1, 1, 1), (0, 2, 3)
    if training:
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        n = x.shape[0]  # the batch size, where N*H*W values make each statistic
        running_mean.mul_(0.9).add_(0.1 * mean)
        running_var.mul_(0.9).add_(0.1 * var * n / (n - 1))
    else:
        mean, var = running_mean, running_var
    return gamma.view(shape) * (x - mean.view(shape)) / (var.view(shape) + 1e-5).sqrt() \
        + beta.view(shape)


def test_batch_norm_with_bessel_on_the_batch_size_is_told_n_is_n_h_w(capsys):
    assert check_batch_norm(bn_bessel_by_batch_size) is False
    out = verdict(capsys)
    # The checker's first batch: (8, 3, 5, 5), so n = 8*5*5 = 200 values per channel.
    assert "N*H*W = 200 here, not the batch size N = 8" in out


def test_batch_norm_in_float64_passes(capsys):
    def in_float64(x, gamma, beta, running_mean, running_var, training):
        y = torch.nn.functional.batch_norm(x.double(), running_mean.double(),
                                           running_var.double(), gamma.double(),
                                           beta.double(), training=False)
        if not training:
            return y
        # Training mode: the batch's statistics, and the running ones updated in place.
        return _bn()(x.double(), gamma, beta, running_mean, running_var, True)

    assert check_batch_norm(in_float64) is True
    assert verdict(capsys) == "✓ batch_norm: passed\n"


# --- zero_pad_shortcut: the stride (issue 24) -----------------------------------------

def always_halves(x, cout, stride):
    kept = x[:, :, ::2, ::2]  # "the shortcut halves the map"
    return torch.cat([kept, kept.new_zeros(len(x), cout - x.shape[1], *kept.shape[2:])], 1)


def test_zero_pad_shortcut_that_always_halves_is_told_about_the_stride(capsys):
    from cnnlab.exercises.resnet import check_zero_pad_shortcut
    assert check_zero_pad_shortcut(always_halves) is False
    # The checker's stride-1 case: 16 -> 32 channels on 5x5 maps, which stay 5x5.
    out = verdict(capsys)
    assert "expected (2, 32, 5, 5)" in out and "halved whatever the stride" in out


def test_zero_pad_shortcut_written_with_a_pool_and_pad_passes(capsys):
    from cnnlab.exercises.resnet import check_zero_pad_shortcut

    def pooled(x, cout, stride):  # a 1x1 max-pool with a stride keeps pixels 0, s, 2s, ...
        kept = F.max_pool2d(x, kernel_size=1, stride=stride)
        return F.pad(kept, (0, 0, 0, 0, 0, cout - x.shape[1]))

    assert check_zero_pad_shortcut(pooled) is True
    assert verdict(capsys) == "✓ zero_pad_shortcut: passed\n"
