"""The chapter 4 checkers pass the solution, and reject the stub and wrong answers.

The solution and the stub are the "exercise" cells of solutions/04_resnet.ipynb
and exercises/04_resnet.ipynb, so these tests test what the notebooks contain.
"""

import pytest
from exercise_cells import verdict
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.exercises.resnet import check_basic_block, check_smallest_upsample

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


def test_basic_block_passes_the_solution(solution, capsys):
    assert check_basic_block(solution["MyBasicBlock"]) is True
    assert verdict(capsys) == "✓ BasicBlock with a projection shortcut: passed\n"


@pytest.mark.parametrize("answer", ["stub", None])
def test_basic_block_stub_is_not_done(stub, capsys, answer):
    assert check_basic_block(stub["MyBasicBlock"] if answer else None) is False
    assert "… BasicBlock with a projection shortcut: not done yet" in verdict(capsys)


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


def test_smallest_upsample_passes_the_solution(solution, capsys):
    assert check_smallest_upsample(solution["smallest_upsample_for_resnet"]) is True
    assert verdict(capsys) == "✓ smallest upsampling factor for ResNet-18: passed\n"


@pytest.mark.parametrize("answer", ["stub", None])
def test_smallest_upsample_stub_is_not_done(stub, capsys, answer):
    fn = stub["smallest_upsample_for_resnet"] if answer else None
    assert check_smallest_upsample(fn) is False
    assert "not done yet" in verdict(capsys)


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
     "least 8x8 (8x8). The map is not simply proportional to the factor"),
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
