"""cnnlab.memory_tables: the book's memory tables, laid out from the estimate
and the records."""
import pytest
import torch

from cnnlab import memory_tables
from cnnlab.memory import (MemoryEstimate, estimate_training_memory, on_meta,
                           torchinfo_estimate_bytes)
from cnnlab.memory_tables import (autocast_total, card_table, estimate_table, largest_batch,
                                  mib, oom_markdown)


def test_mib_is_bytes_over_2_to_the_20():
    assert mib(3 * 2**19) == "1.5"
    assert mib(1_492_534_436) == "1,423.4"  # alexnet_large at batch 128


def test_autocast_halves_only_the_activations():
    e = MemoryEstimate(400, 400, 800, 1000)
    assert autocast_total(e) == 400 + 400 + 800 + 500


@pytest.mark.parametrize("available", [399, 400, 999, 1000, 1099, 5000])
def test_largest_batch_is_the_last_one_that_fits(available):
    # Fixed part 400 bytes; activations 1,000 bytes at batch 10: 100 per image.
    e = MemoryEstimate(100, 100, 200, 1000)

    def total(batch):  # the estimate at another batch, by hand
        return 400 + 100 * batch

    fits = [b for b in range(0, 100) if total(b) <= available]
    assert largest_batch(e, 10, available) == max(fits, default=0)


def test_the_card_table_says_fits_exactly_when_the_total_is_within_the_room():
    estimates = {"small": MemoryEstimate(100, 100, 200, 1000),
                 "large": MemoryEstimate(1000, 1000, 2000, 1000)}
    table = card_table(estimates, 10, available=2000).data
    small = next(r for r in table.splitlines() if r.startswith("| small |"))
    large = next(r for r in table.splitlines() if r.startswith("| large |"))
    assert "| fits |" in small and small.endswith("| 16 |")  # (2000 - 400) // 100
    assert "| **does not fit** |" in large and large.endswith("| 0 |")


def test_the_estimate_table_sets_the_total_against_torchinfo():
    estimates = {"lenet": estimate_training_memory(on_meta("lenet"), 128)}
    row = estimate_table(estimates, 128).data.splitlines()[-1].split(" | ")
    theirs = torchinfo_estimate_bytes(on_meta("lenet"), 128)
    assert row[5] == mib(theirs)
    assert row[6].rstrip(" |") == f"{estimates['lenet'].total / theirs:.2f}"


def _fake_cuda(monkeypatch, before=1_000, peak=5_000):
    """The CUDA allocator's counters, faked, so the measuring runs on the CPU."""
    calls = []
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: before)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: peak)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    return calls


@pytest.mark.parametrize("dtype, scaled", [(None, False), (torch.bfloat16, False),
                                           (torch.float16, True)])
def test_measured_peak_trains_two_steps_as_fit_does(monkeypatch, dtype, scaled):
    import cnnlab.train

    calls = _fake_cuda(monkeypatch)
    steps = []
    real_step = cnnlab.train.train_step

    def spy(model, optimizer, x, y, micro, amp, scaler=None):
        steps.append((len(y), micro, amp, scaler))
        return real_step(model, optimizer, x, y, micro, amp, scaler)

    monkeypatch.setattr(cnnlab.train, "train_step", spy)
    peak = memory_tables.measured_peak("lenet", 4, dtype, "cpu")
    assert peak == 5_000 - 1_000  # the peak beyond what was there before
    assert calls[0] == "reset" and "sync" in calls
    assert [s[:3] for s in steps] == [(4, 4, dtype)] * 2
    # float16's narrow range needs a GradScaler, as in cnnlab.train.fit.
    assert all(isinstance(s[3], torch.amp.GradScaler) == scaled for s in steps)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_measured_table_uses_the_packages_autocast_dtype(monkeypatch, dtype):
    # A T4 gets float16, an H100 bfloat16: the table must not assume one.
    import cnnlab.device

    monkeypatch.setattr(cnnlab.device, "autocast_dtype", lambda device, enabled: dtype)
    measured = []
    monkeypatch.setattr(memory_tables, "measured_peak",
                        lambda name, batch, d, device: measured.append(d) or 2**20)
    e = MemoryEstimate(2**20, 2**20, 2**21, 2**21)
    table = memory_tables.measured_table({"lenet": e}, 128, "cpu").data
    label = str(dtype).removeprefix("torch.")
    assert f"measured, {label} autocast" in table.splitlines()[0]
    assert measured == [None, dtype]
    assert table.splitlines()[-1] == "| lenet | 6.0 | 1.0 | 5.0 | 1.0 |"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measured_peak_on_a_real_gpu_holds_at_least_the_weights_and_adamw():
    e = estimate_training_memory(on_meta("lenet"), 128)
    peak = memory_tables.measured_peak("lenet", 128, None, "cuda")
    assert peak >= e.parameters_bytes + e.gradients_bytes + e.optimizer_state_bytes


def _case(cap, batch, total, fitted):
    return {"cap_bytes": cap, "batch_size": batch, "estimate": {"total": total},
            "outcome": "trained two steps" if fitted else "failed",
            "error": None if fitted else "RuntimeError: can't allocate memory\nmore"}


def _record(cases):
    return {"model": "alexnet_large", "cases": cases,
            "provenance": {"date": "2026-01-02T03:04:05", "device_name": "Some CPU",
                           "cpu_threads": 2, "torch": "2.x", "git_commit": "ab" * 20}}


def test_the_oom_summary_counts_the_outcomes_the_estimate_predicted():
    gib = 2**30
    cases = [_case(2 * gib, 128, int(1.4 * gib), True),    # predicted fits: right
             _case(2 * gib, 512, int(2.9 * gib), False),   # predicted fails: right
             _case(1 * gib, 128, int(0.9 * gib), False)]   # predicted fits: wrong
    text = oom_markdown(_record(cases), available=int(1.7 * gib))
    assert "**The estimate predicted 2 of the 3 outcomes.**" in text
    assert "| 1 GiB | 128 | 0.90 GiB | -10% | fits | failed |" in text
    assert "| 2 GiB | 512 | 2.90 GiB | +45% | does not fit | failed |" in text
    # The miss says how far the real need lay from the estimate: the step
    # failed under 1 GiB with an estimate of 0.9, so it needed over 11% more.
    assert ("Wrong for batch 128 under 1 GiB: its estimate was 10% under the cap, yet it "
            "failed, so the two steps needed more than 11% beyond the estimate." in text)
    # Of those it got right, the nearest its cap: 1.4 against 2 GiB.
    assert ("Of the outcomes it predicted, the nearest its cap had an estimate 30% under "
            "it." in text)
    # A step that trained although its estimate was over the cap.
    over = oom_markdown(_record([_case(2 * gib, 288, int(2.2 * gib), True)]), int(1.7 * gib))
    assert ("its estimate was 10% over the cap, yet it trained, so the two steps needed "
            "at least 9% less than the estimate." in over)
    assert "Of the outcomes it predicted" not in over
    # Each failed step's error, its first line only.
    assert "* batch 128 under 1 GiB: `RuntimeError: can't allocate memory`" in text
    assert "more" not in text.split("as PyTorch raised it")[1].split("recorded")[0]
    assert "recorded 2026-01-02 on Some CPU (2 threads)" in text
    # What the 2 GiB cases say about a real 2 GB card; the 1 GiB case says nothing.
    assert "Batch 128 trained two steps under the 2 GiB cap" in text
    assert "it fits, with" in text
    assert "Batch 512 failed under the 2 GiB cap" in text
    assert text.count("Batch ") == 2


def test_a_step_that_fits_the_cap_but_not_the_cards_room_is_said_not_to_fit():
    gib = 2**30
    text = oom_markdown(_record([_case(2 * gib, 128, int(1.9 * gib), True)]),
                        available=int(1.7 * gib))
    assert "it does not fit." in text


def test_without_a_record_the_summary_says_so():
    assert oom_markdown(None, 2**30).startswith("No out-of-memory experiment is recorded")


def test_the_recorded_oom_experiment_reads():
    record = memory_tables.oom_record()
    if record is None:
        pytest.skip("no out-of-memory experiment recorded")
    text = oom_markdown(record, 2**30)
    right = sum((c["estimate"]["total"] <= c["cap_bytes"])
                == (c["outcome"] == "trained two steps") for c in record["cases"])
    assert f"predicted {right} of the {len(record['cases'])} outcomes" in text
