"""cnnlab.factors: LeNet at a larger input, training it step for step, depth."""
from types import SimpleNamespace

import matplotlib.colors as mcolors
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import factors
from cnnlab.data import DeviceBatches, MnistSplits
from cnnlab.factors import (LiveRun, depth_figure, depth_table, flat_gradient,
                            input_size_figure, input_size_note, lenet_at,
                            lenet_final_side, model_facts, train_for_steps, weight_depth)
from cnnlab.memory import on_meta
from cnnlab.models import count_parameters, get_model
from cnnlab.plots import model_colour
from cnnlab.train import TrainConfig, evaluate, set_seed

# ------------------------------------------------------------------ input size


@pytest.mark.parametrize("size", [28, 32, 56, 224])
def test_the_final_side_is_what_lenets_layers_produce(size):
    # The oracle: the package's own conv and pool layers on a real input.
    maps = get_model("lenet").features(torch.zeros(1, 1, size, size))
    assert maps.shape[-2:] == (lenet_final_side(size),) * 2


def test_an_input_too_small_for_lenet_is_refused():
    with pytest.raises(ValueError, match="too small"):
        lenet_final_side(12)  # 12 -> 4 -> 2 -> -2


def test_lenet_at_1_is_the_package_lenet_itself():
    set_seed(0)
    ours = lenet_at(1)
    set_seed(0)
    package = get_model("lenet")
    assert type(ours) is type(package)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(),
                                                 package.state_dict().values()))


def test_lenet_at_2_upsamples_then_applies_lenet_with_a_wider_fc1():
    set_seed(0)
    big = lenet_at(2)
    # FC1 takes 16 x 11 x 11 = 1,936 numbers instead of 256: 1,680 more
    # inputs for each of its 120 units.
    assert count_parameters(big) == 44_426 + (1936 - 256) * 120
    x = torch.randn(3, 1, 28, 28)
    lenet = big[1]
    by_hand = lenet(F.interpolate(x, scale_factor=2, mode="bilinear"))
    assert torch.allclose(big(x), by_hand)


def test_under_one_seed_only_fc1_starts_differently():
    set_seed(7)
    small = lenet_at(1).state_dict()
    set_seed(7)
    big = lenet_at(2)[1].state_dict()
    for name, value in small.items():
        if name.startswith("classifier.1."):
            assert big[name].shape != value.shape or not torch.equal(big[name], value)
        else:
            assert torch.equal(big[name], value), name


@pytest.mark.parametrize("scale", [0, -1, 1.5, True])
def test_lenet_at_refuses_a_scale_that_is_not_a_positive_integer(scale):
    with pytest.raises(ValueError, match="scale"):
        lenet_at(scale)


def _by_hand(model: nn.Module, data: MnistSplits, config: TrainConfig, steps: int):
    """The report's recipe written out in plain PyTorch: the oracle."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    batches = DeviceBatches(data.train, config.batch_size, shuffle=True, seed=config.seed)
    done = 0
    while done < steps:
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            done += 1
            if done == steps:
                return model
    return model


def test_train_for_steps_takes_the_steps_plain_pytorch_takes(small):
    # 2,560 images are 20 batches of 128: 25 steps cross an epoch's end.
    # Not AdamW's defaults, so that a recipe setting left out shows.
    config = TrainConfig(model="lenet", max_steps=25, seed=3, test_images=200, lr=3e-3,
                         weight_decay=0.1)
    set_seed(3)
    ours = get_model("lenet")
    run = train_for_steps(ours, small, config, eval_every=10, val_images=300)
    set_seed(3)
    theirs = _by_hand(get_model("lenet"), small, config, 25)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert run.steps == (10, 20, 25)  # every 10 steps and the last
    assert run.val_images == 300 and len(run.val_accuracy) == 3
    assert run.val_accuracy[-1] == evaluate(theirs, small.val.head(300))[1]
    assert run.test_accuracy == evaluate(theirs, small.test.head(200))[1]


def test_train_for_steps_stops_at_the_epochs_when_there_is_no_step_budget(small):
    config = TrainConfig(model="lenet", epochs=1, eval_every=1)
    run = train_for_steps(get_model("lenet"), small, config, eval_every=8)
    assert run.steps == (8, 16, 20)  # one epoch of 2,560 images is 20 steps


def test_train_for_steps_learns(small):
    # A chosen bar: 60 steps of the ReLU LeNet reach about 90% here, a
    # constant guess 10-12%.
    set_seed(0)
    config = TrainConfig(model="lenet", max_steps=60, seed=0)
    run = train_for_steps(get_model("lenet", activation="relu"), small, config,
                          eval_every=30)
    assert run.test_accuracy > 0.75


def _rgb(colour) -> tuple:
    return tuple(round(v, 3) for v in mcolors.to_rgb(colour))


def test_the_input_size_figure_draws_every_run_in_lenets_colour():
    live = {1: LiveRun((25, 50), (0.5, 0.7), 0.8, 2000),
            2: LiveRun((25, 50), (0.6, 0.8), 0.85, 2000)}
    recorded = [SimpleNamespace(val_step=[125, 250], val_accuracy=[0.4, 0.8])] * 3
    fig = input_size_figure(live, recorded)
    lines = [line for line in fig.axes[0].lines if line.get_gid() is None]
    assert len(lines) == 5  # three recorded seeds, two live runs
    end = [line for line in fig.axes[0].lines if line.get_gid() == "end of this run"]
    assert list(end[0].get_xdata()) == [50, 50]  # where this page's runs stop
    assert {_rgb(line.get_color()) for line in lines} == {_rgb(model_colour("lenet"))}
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["recorded full runs, 28 px (3 seeds)", "this run, 28 px",
                      "this run, 56 px"]
    assert fig.get_facecolor()[:3] == (1.0, 1.0, 1.0)


def _recorded(val_at_375: float, test: float, epochs: int = 5) -> SimpleNamespace:
    """A recorded 28 px run: validated at steps 125, 250 and 375, then tested."""
    return SimpleNamespace(val_step=[125, 250, 375], val_accuracy=[0.4, 0.7, val_at_375],
                           test_accuracy=test, epoch_val_accuracy=[0.9] * epochs)


_LIVE = {1: LiveRun((125, 250, 375), (0.5, 0.8, 0.86), 0.8746, 2000),
         2: LiveRun((125, 250, 375), (0.6, 0.8, 0.88), 0.8995, 2000)}


def test_the_input_size_note_sets_the_gap_beside_the_seeds_spread():
    recorded = [_recorded(0.8692, 0.9756), _recorded(0.8348, 0.9689),
                _recorded(0.8828, 0.9741)]
    note = input_size_note(_LIVE, recorded, report_gain=0.5)
    # 89.95 - 87.46 = +2.49; the recorded runs sorted, lowest to highest.
    assert note.startswith("This page, one seed per size: 56 px scored +2.49 points of "
                           "test accuracy against 28 px after 375 steps.")
    assert ("(3 seeds): 83.48% to 88.28% validation accuracy at step 375, and 96.89% to "
            "97.56% test accuracy after 5 epochs.") in note
    # 97.56 - 96.89 = 0.67 points: the report's 0.5 fits inside.
    assert note.endswith("is no wider than that last range (0.67 points): the seed alone "
                         "moves one run by as much.")


def test_the_input_size_note_says_when_the_reports_gain_is_wider_than_the_seeds():
    recorded = [_recorded(0.87, 0.973), _recorded(0.86, 0.975)]
    note = input_size_note(_LIVE, recorded, report_gain=0.5)
    # 97.50 - 97.30 = 0.20 points, narrower than 0.5: still no claim on the size.
    assert "wider than that last range (0.20 points), but one run per size cannot" in note
    assert "no wider" not in note


def test_the_input_size_note_leaves_out_a_step_the_records_did_not_validate():
    # Runs validated elsewhere than at the page's last step: no such range.
    recorded = [SimpleNamespace(val_step=[100], val_accuracy=[0.5], test_accuracy=t,
                                epoch_val_accuracy=[0.9]) for t in (0.96, 0.97)]
    note = input_size_note(_LIVE, recorded)
    assert "validation accuracy at step" not in note
    assert "(2 seeds): 96.00% to 97.00% test accuracy after 1 epoch." in note


@pytest.mark.parametrize("recorded", [[], [_recorded(0.87, 0.975)]])
def test_the_input_size_note_claims_no_spread_from_fewer_than_two_runs(recorded):
    note = input_size_note(_LIVE, recorded)
    assert "cannot say how far the seed alone moves one run" in note
    assert "report's" not in note


# ----------------------------------------------------------------------- depth


def test_depth_counts_a_chain_of_weight_layers():
    chain = nn.Sequential(nn.Flatten(), nn.Linear(784, 20), nn.ReLU(), nn.Linear(20, 20),
                          nn.ReLU(), nn.Linear(20, 10))
    assert weight_depth(chain) == 3


class _Branches(nn.Module):
    """Two branches side by side (3 convs against 1), concatenated, then a linear."""

    def __init__(self) -> None:
        super().__init__()
        self.long = nn.Sequential(*[nn.Conv2d(1 if i == 0 else 2, 2, 3, padding=1)
                                    for i in range(3)])
        self.short = nn.Conv2d(1, 2, 1)
        self.head = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        return self.head(torch.cat([self.long(x), self.short(x)], 1).flatten(1))


class _Residual(nn.Module):
    """x + f(x), f two convs: the shortcut must not lengthen the path."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1))

    def forward(self, x):
        return x + self.f(x)


def test_side_by_side_branches_count_once_and_a_shortcut_adds_nothing():
    assert weight_depth(_Branches()) == 3 + 1
    assert weight_depth(_Residual()) == 2


def test_a_very_deep_network_does_not_exhaust_pythons_recursion():
    with torch.device("meta"):
        deep = nn.Sequential(*[nn.Linear(4, 4) for _ in range(1500)])
    assert weight_depth(deep, (1, 4)) == 1500


@pytest.mark.parametrize("name, depth", [
    ("lenet", 5),          # C1, C3, C5 (a linear layer here), F6, output
    ("alexnet", 8),        # five convolutions, three fully connected layers
    ("alexnet_large", 8),
    ("resnet18", 18),      # the "18" of its name
    ("mobilenet_v1", 28),  # Howard et al.: 28 layers, depthwise and pointwise apart
    ("googlenet", 22),     # Szegedy et al.: "22 layers deep when counting only
])                         # layers with parameters"
def test_depth_matches_what_the_papers_count(name, depth):
    assert weight_depth(on_meta(name)) == depth


def test_model_facts_counts_parameters_and_mult_adds():
    facts = model_facts(["lenet"])["lenet"]
    assert facts.depth == 5 and facts.parameters == 44_426
    # torchinfo's mult-adds: each layer's parameters (weights and biases)
    # times the output positions that reuse them. conv1 156 x 24 x 24,
    # conv2 2,416 x 8 x 8; the linear layers once each.
    assert facts.mult_adds == 156 * 24 * 24 + 2416 * 8 * 8 + 30_840 + 10_164 + 850


def test_the_depth_table_gives_each_models_row(monkeypatch):
    import cnnlab.findings

    runs = {"lenet": [SimpleNamespace(test_accuracy=0.96),
                      SimpleNamespace(test_accuracy=0.98)]}
    monkeypatch.setattr(cnnlab.findings, "device_runs", lambda name: runs.get(name, []))
    table = depth_table(model_facts(["lenet", "alexnet_large"])).data
    lenet = next(line for line in table.splitlines() if line.startswith("| lenet |"))
    # 97.00 ± 1.41: the mean and sample standard deviation of 96 and 98.
    # The plan has 3 seeds of lenet: a row short of them says so ('2 of 3').
    assert lenet == "| lenet | 5 | 44,426 | 0.3 M | 97.00 ± 1.41 (2 of 3 seeds) | 97.44 |"
    large = next(line for line in table.splitlines() if line.startswith("| alexnet_large"))
    assert large.endswith("| not recorded | no row |")


def test_the_depth_figure_draws_each_model_in_its_colour():
    facts = model_facts(["lenet", "resnet18", "googlenet"])
    fig = depth_figure(facts)
    for ax in fig.axes:
        drawn = [(tuple(c.get_offsets()[0]), _rgb(c.get_facecolor()[0]))
                 for c in ax.collections]
        assert len(drawn) == 3
        for name, f in facts.items():
            value = f.parameters if ax is fig.axes[0] else f.mult_adds
            assert ((f.depth, value), _rgb(model_colour(name))) in drawn
    assert fig.get_facecolor()[:3] == (1.0, 1.0, 1.0)


# ------------------------------------------------------------------- gradients


def test_flat_gradient_lays_out_every_parameters_gradient_in_order():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model(torch.randn(4, 3)).sum().backward()
    by_hand = torch.cat([model[0].weight.grad.flatten(), model[0].bias.grad,
                         model[1].weight.grad.flatten(), model[1].bias.grad])
    assert torch.equal(flat_gradient(model), by_hand)


def test_flat_gradient_puts_zeros_where_there_is_no_gradient_yet():
    model = nn.Linear(3, 2)
    assert torch.equal(flat_gradient(model), torch.zeros(8))
    assert factors.flat_gradient(get_model("lenet")).numel() == 44_426
