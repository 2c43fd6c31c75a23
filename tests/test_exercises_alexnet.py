"""The chapter 3 (AlexNet) checkers reject plausible wrong answers with a specific
message, and accept right answers written differently.

(tests/test_exercise_registry.py runs every checker on the notebooks'
solution, stub and a None answer.)
"""

from exercise_cells import rejected
import torch
from torch import nn

from cnnlab.exercises.alexnet import (check_fc1_share, check_linear_params,
                                      check_smallest_upsample)
from cnnlab.models import count_parameters, get_model

NOTEBOOK = "03_alexnet.ipynb"


def meta_model(name):
    with torch.device("meta"):
        return get_model(name)


def first_linear(model):
    return next(m for m in model.modules() if isinstance(m, nn.Linear))


# --- linear_params ----------------------------------------------------------

def test_linear_params_rejects_the_weights_alone(capsys):
    out = rejected(check_linear_params, lambda n_in, n_out: n_in * n_out, capsys=capsys)
    # nn.Linear(256, 120): 256 * 120 weights + 120 biases = 30840; weights alone 30720.
    assert "linear_params(256, 120) (what nn.Linear(256, 120) holds): " \
           f"expected {256 * 120 + 120}, got {256 * 120}" in out
    assert "each of the 120 outputs has a bias too" in out


def test_linear_params_rejects_a_bias_on_the_inputs(capsys):
    def with_input_biases(n_in, n_out):
        return (n_in + 1) * (n_out + 1)
    out = rejected(check_linear_params, with_input_biases, capsys=capsys)
    assert "only the outputs have biases" in out


# --- fc1_share --------------------------------------------------------------

def fc1_share_as_percentage(model_name):
    model = meta_model(model_name)
    return 100 * count_parameters(first_linear(model)) / count_parameters(model)


def fc1_share_without_bias(model_name):
    model = meta_model(model_name)
    fc1 = first_linear(model)
    return fc1.in_features * fc1.out_features / count_parameters(model)


def fc1_share_of_the_reduced_alexnet(model_name):
    # fc1 over AlexNet's count (43,446,122, derived in test_models.py): right for one model only
    return (128 * 7 * 7 * 4096 + 4096) / 43_446_122


def test_fc1_share_rejects_a_percentage(capsys):
    out = rejected(check_fc1_share, fc1_share_as_percentage, capsys=capsys)
    model = meta_model("alexnet")
    share = count_parameters(first_linear(model)) / count_parameters(model)
    assert f"fc1_share('alexnet'): expected {share:.6f}, got {100 * share}" in out
    assert "not a percentage" in out


def test_fc1_share_rejects_the_weights_alone(capsys):
    out = rejected(check_fc1_share, fc1_share_without_bias, capsys=capsys)
    assert "count the layer's biases too" in out


def test_fc1_share_rejects_a_number_for_one_model(capsys):
    out = rejected(check_fc1_share, fc1_share_of_the_reduced_alexnet, capsys=capsys)
    model = meta_model("alexnet_large")
    share = count_parameters(first_linear(model)) / count_parameters(model)
    assert f"fc1_share('alexnet_large'): expected {share:.6f}" in out
    assert "Linear(9216, 4096)" in out  # 256 * 6 * 6 = 9216 inputs


# --- smallest_upsample ------------------------------------------------------

def last_map(model, side):
    """The last map's side for a side x side input, 0 if it does not fit."""
    try:
        out = model(torch.zeros(1, 1, side, side, device="meta"))
    except RuntimeError:
        return 0
    return min(out.shape[-2:])


def upsample_through_the_whole_model(model_name, min_map=1):
    # Feeds the model's own upsampling layer too: every factor is x8 too big.
    model = meta_model(model_name)
    for f in range(1, 33):
        if last_map(nn.Sequential(model.upsample, model.features), 28 * f) >= min_map:
            return f


def upsample_off_by_one(model_name, min_map=1):
    # Returns the last factor that fails instead of the first that works.
    features = meta_model(model_name).features
    f = 1
    while last_map(features, 28 * f) < min_map:
        f += 1
    return f - 1


def test_smallest_upsample_rejects_the_packages_x8_everywhere(capsys):
    out = rejected(check_smallest_upsample, lambda model_name, min_map=1: 8, capsys=capsys)
    # alexnet_large (conv 11/4 pad 2, three 3x3/2 pools): x3 = 84 px -> 20 -> 9 -> 4 -> 1;
    # x2 = 56 px -> 13 -> 6 -> 2, too small for the last 3x3 pool.
    assert "smallest_upsample('alexnet_large', min_map=1): expected 3, got 8" in out
    assert "at x8 the 224px input ends in 6x6 maps; at x3 the maps are 1x1" in out


def test_smallest_upsample_rejects_the_models_own_upsampling(capsys):
    out = rejected(check_smallest_upsample, upsample_through_the_whole_model, capsys=capsys)
    assert "smallest_upsample('alexnet_large', min_map=1): expected 3, got 1" in out
    assert "not to the model: it would upsample once more" in out


def test_smallest_upsample_rejects_the_last_factor_that_fails(capsys):
    out = rejected(check_smallest_upsample, upsample_off_by_one, capsys=capsys)
    assert "expected 3, got 2" in out  # 3 - 1
    assert "at x2 the 56px input does not get through the features" in out


# --- lrn ---------------------------------------------------------------------

# Krizhevsky et al. 2012, section 3.3: k = 2, n = 5, alpha = 1e-4, beta = 0.75.
def test_lrn_with_pytorchs_alpha_convention_is_named(capsys):
    from cnnlab.exercises.alexnet import check_lrn

    def pytorch_alpha(a, size=5, alpha=1e-4, beta=0.75, k=2.0):
        return torch.nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)(a)

    assert not check_lrn(pytorch_alpha)
    assert "you divided alpha by the window size" in capsys.readouterr().out


def test_lrn_written_with_pytorchs_layer_and_the_right_alpha_passes(capsys):
    from cnnlab.exercises.alexnet import check_lrn

    def via_layer(a, size=5, alpha=1e-4, beta=0.75, k=2.0):
        return torch.nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)(a)

    assert check_lrn(via_layer)
    assert "✓" in capsys.readouterr().out


def test_lrn_without_the_neighbours_is_told_about_the_window(capsys):
    from cnnlab.exercises.alexnet import check_lrn
    assert not check_lrn(lambda a, size=5, alpha=1e-4, beta=0.75, k=2.0:
                         a / (k + alpha * a ** 2) ** beta)
    assert "the sum runs over the neighbouring channels" in capsys.readouterr().out


def lrn_in_float64(a, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """The paper's formula, computed in double precision (a right answer)."""
    a = a.double()
    squares, half = a ** 2, size // 2
    sums = torch.stack([squares[:, max(0, i - half):i + half + 1].sum(1)
                        for i in range(a.shape[1])], dim=1)
    return a / (k + alpha * sums) ** beta


def test_lrn_in_float64_passes(capsys):
    # The issue: this was told "your code raised RuntimeError: Double did not match
    # Float", an error of the checker's own comparison.
    from cnnlab.exercises.alexnet import check_lrn
    assert check_lrn(lrn_in_float64)
    assert capsys.readouterr().out == "✓ lrn: passed\n"


def test_lrn_in_half_precision_is_told_its_dtype(capsys):
    from cnnlab.exercises.alexnet import check_lrn
    out = rejected(check_lrn, lambda a, size=5, alpha=1e-4, beta=0.75, k=2.0:
                   lrn_in_float64(a, size, alpha, beta, k).half(), capsys=capsys)
    assert "your tensor is torch.float16, too coarse for these values" in out


def test_lrn_returning_integers_is_told_its_dtype(capsys):
    from cnnlab.exercises.alexnet import check_lrn
    out = rejected(check_lrn, lambda a, size=5, alpha=1e-4, beta=0.75, k=2.0:
                   lrn_in_float64(a, size, alpha, beta, k).long(), capsys=capsys)
    assert "returned a tensor of dtype torch.int64; return floating-point values" in out
