"""The schematic block figures: drawn, and their numbers are the package's."""
import pytest
import torch

from cnnlab import diagrams
from cnnlab.models.googlenet import INCEPTION, Inception


def texts(fig):
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


@pytest.mark.parametrize("name", ["3a", "4e", "5b"])
def test_the_inception_figure_adds_up_like_the_package_module(name):
    with torch.device("meta"):
        out = Inception(*INCEPTION[name]).out_channels
    shown = texts(diagrams.inception_figure(name))
    assert f"= {out} channels" in shown and f"module {name}" in shown


def test_the_residual_block_figure_shows_both_shortcuts():
    shown = texts(diagrams.residual_block_figure())
    assert "shortcut: x itself" in shown and "shortcut: a projection" in shown
    assert "1x1 conv /2" in shown


def test_the_separable_figure_counts_the_weights_of_both_convolutions():
    shown = texts(diagrams.separable_figure(cin=4, cout=6, k=3))
    assert "= 216 weights" in shown  # 3*3*4*6
    assert "= 60 weights" in shown   # 3*3*4 + 4*6


def test_the_upsampled_digit_figure_shows_each_size():
    digit = torch.zeros(28, 28, dtype=torch.uint8)
    digit[10:18, 12:16] = 255
    fig = diagrams.upsampled_digit_figure(digit, factors=(1, 2, 8))
    shown = texts(fig)
    sizes = [28 * f for f in (1, 2, 8)]  # 28, 56, 224
    assert all(f"{s} x {s} px" in shown for s in sizes)
    assert [ax.images[0].get_array().shape for ax in fig.axes] == [(s, s) for s in sizes]
