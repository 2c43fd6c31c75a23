"""cnnlab.bench: the side-by-side step timings the chapters quote."""
import pytest
import torch
from torch import nn

from cnnlab import bench


def test_images_per_second_times_each_model_in_every_round(monkeypatch):
    clock = iter(range(1000))  # each perf_counter call advances one second
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(clock)))
    order = []
    real_sync = bench.sync
    monkeypatch.setattr(bench, "sync", lambda device: order.append(len(order)) or
                        real_sync(device))
    rates = bench.images_per_second(["lenet", "mobilenet_v1"], rounds=2, steps=1, batch=4,
                                    device=torch.device("cpu"))
    # One step of 4 images between two clock reads one second apart: 4 images/s.
    assert rates == {"lenet": 4.0, "mobilenet_v1": 4.0}
    assert len(order) == 2 * 2 * 2  # 2 rounds x 2 models x (start, stop)


class Spy(nn.Module):
    """A tiny model that records its mode and whether autograd was on."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(28 * 28, 10)
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("train", [True, False])
def test_step_seconds_trains_or_only_evaluates(train):
    spy = Spy()
    before = spy.linear.weight.detach().clone()
    seconds = bench.step_seconds({"spy": spy}, train=train, batch=4, rounds=2, steps=3,
                                 device=torch.device("cpu"))
    assert set(seconds) == {"spy"} and seconds["spy"] > 0
    assert len(spy.seen) == 1 + 2 * 3  # one warm-up, then rounds x steps
    assert set(spy.seen) == {(train, train)}  # train mode with autograd, or neither
    assert torch.equal(spy.linear.weight, before) is not train  # only training steps update


def test_step_seconds_takes_names_and_modules_and_keeps_the_labels():
    seconds = bench.step_seconds({"by name": "lenet", "a module": Spy()}, batch=2,
                                 rounds=1, device=torch.device("cpu"))
    assert list(seconds) == ["by name", "a module"]


def test_epoch_seconds_reads_every_batch_of_every_loader_in_each_round(monkeypatch):
    clock = iter(range(1000))  # each perf_counter call advances one second
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(clock)))
    read = []

    def loader(name, batches):
        for i in range(batches):
            read.append(name)
            yield torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)

    class Twice:  # a loader that can be iterated again, as a DataLoader can
        def __init__(self, name, batches):
            self.name, self.batches = name, batches

        def __iter__(self):
            return loader(self.name, self.batches)

    seconds = bench.epoch_seconds({"a": Twice("a", 3), "b": Twice("b", 2)},
                                  torch.device("cpu"), rounds=2)
    assert read == ["a"] * 3 + ["b"] * 2 + ["a"] * 3 + ["b"] * 2  # alternating rounds
    assert seconds == {"a": 1.0, "b": 1.0}  # one clock tick between start and stop
