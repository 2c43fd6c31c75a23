"""The bottleneck and pre-activation figures: drawn, and their weight counts
are those of torchvision's own blocks (the oracle), not numbers typed here."""
import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from cnnlab import block_diagrams


def texts(fig):
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


def conv_weight_count(block: nn.Module) -> int:
    return sum(m.weight.numel() for m in block.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("width", [16, 64, 128])
def test_bottleneck_weights_match_torchvisions_bottleneck(width):
    with torch.device("meta"):
        block = Bottleneck(inplanes=4 * width, planes=width)  # expansion 4
    assert block_diagrams.bottleneck_weights(width) == conv_weight_count(block)


@pytest.mark.parametrize("width", [16, 64, 256])
def test_basic_block_weights_match_torchvisions_basic_block(width):
    with torch.device("meta"):
        block = BasicBlock(inplanes=width, planes=width)
    assert block_diagrams.basic_block_weights(width) == conv_weight_count(block)


def test_the_bottleneck_figure_prints_the_counts_it_draws():
    shown = texts(block_diagrams.bottleneck_figure(64, 4))
    assert "conv 1x1, 256 -> 64" in shown and "conv 1x1, 64 -> 256" in shown
    assert "73,728 conv weights" in shown           # 2 * 3*3*64*64
    assert "69,632 conv weights" in shown           # 256*64 + 3*3*64*64 + 64*256
    assert "1,179,648" in shown                     # 2 * 3*3*256*256


def test_at_the_papers_widths_the_bottleneck_costs_less_than_the_basic_block():
    # The paper's reason for the bottleneck (Sec. 3.3, Fig. 5): at 256 channels
    # it costs about what a 64-channel basic block does.
    assert (block_diagrams.bottleneck_weights(64)
            < block_diagrams.basic_block_weights(64)
            < block_diagrams.basic_block_weights(256))


def test_the_preactivation_figure_shows_both_orders():
    fig = block_diagrams.preactivation_figure()
    shown = texts(fig)
    # Dated as the book cites the papers: CVPR 2016 and ECCV 2016, not arXiv's 2015.
    assert "original (He et al., CVPR 2016)" in shown
    assert "pre-activation (He et al., ECCV 2016)" in shown
    assert "out = x + F(x)" in shown and "gates the skip path" in shown
    boxes = [t.get_text() for t in fig.axes[0].texts]
    # The original ends with a ReLU after the +; the pre-activation block ends at the +.
    assert boxes.count("ReLU") == 1
