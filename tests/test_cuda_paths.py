"""The CUDA paths of the trainer, proved on the CPU.

A GPU may be lent for a few minutes only, so what runs there must work the
first time. Each test here pins one CUDA (or MPS) behaviour that a CPU can
check: by calling the CUDA branch with torch's CUDA calls stood in for,
by forcing the loop's GPU branch, or by the meta device standing in for a
GPU. Tests marked ``needs_cuda`` run the real thing where a GPU is present.
"""
from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import cnnlab.bench as bench
import cnnlab.device
import cnnlab.oom
import cnnlab.train as train
from cnnlab.data import MnistSplits, Split
from cnnlab.memory import peak_memory, reset_peak_memory
from cnnlab.models import get_model, list_models
from cnnlab.device import CompileError, autocast_dtype, compiled, one_line
from cnnlab.oom import OptimizerOutOfMemoryError, halve_on_oom
from cnnlab.train import TrainConfig, evaluate, fit, train_step

ROOT = Path(__file__).resolve().parent.parent
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
OOM = torch.cuda.OutOfMemoryError


def tiny(n_train: int = 40, n_eval: int = 20) -> MnistSplits:
    """Random uint8 images: enough for the paths, not for learning."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        return Split(torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g))
    return MnistSplits(split(n_train), split(n_eval), split(n_eval))


# --- autocast: bf16 where the hardware has it, else fp16 with a GradScaler -----

@pytest.mark.parametrize("capability, expected", [((7, 0), torch.float16),
                                                  ((7, 5), torch.float16),
                                                  ((8, 0), torch.bfloat16),
                                                  ((9, 0), torch.bfloat16)])
def test_autocast_is_bf16_only_on_gpus_that_have_it(capability, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert autocast_dtype(torch.device("cuda"), True) == expected
    assert autocast_dtype(torch.device("cuda:0"), False) is None
    assert autocast_dtype(torch.device("cpu"), True) == torch.bfloat16  # as recorded


def _first_output_dtype(model: nn.Module) -> list:
    """A hook on the model's first layer with weights: the dtype it computes in."""
    seen: list = []
    layer = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    layer.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", list_models())
def test_every_model_steps_under_autocast_with_the_scaler_for_fp16(name, dtype):
    torch.manual_seed(0)
    model = get_model(name)
    seen = _first_output_dtype(model)
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu") if dtype == torch.float16 else None
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    for _ in range(4):  # fp16: the scaler skips a step whose gradients overflowed
        loss = train_step(model, optimizer, x, y, micro_batch=4, amp=dtype, scaler=scaler)
        assert torch.isfinite(loss) and loss.dtype == torch.float32
        if any(not torch.equal(v, before[k]) for k, v in model.state_dict().items()):
            break
    else:
        pytest.fail("no step changed the weights")
    assert seen[0] == dtype  # the layer ran in the autocast dtype
    if scaler is not None:
        assert scaler.get_scale() > 1  # the loss was scaled (2**16 at first)


def test_a_gpu_without_bf16_trains_in_fp16_with_a_grad_scaler(monkeypatch):
    scaled = []

    class Scaler(torch.amp.GradScaler):
        def scale(self, outputs):
            scaled.append(True)
            return super().scale(outputs)

    monkeypatch.setattr(train, "autocast_dtype", lambda device, enabled: torch.float16)
    monkeypatch.setattr(torch.amp, "GradScaler", Scaler)
    r = fit(TrainConfig(model="lenet", max_steps=3, eval_every=3, device="cpu"), tiny(),
            progress=False)
    assert r.config["amp"] is True and r.config["amp_dtype"] == "float16"
    assert len(scaled) == 3  # every step's loss through the scaler


def test_the_result_records_the_autocast_dtype():
    r = fit(TrainConfig(model="lenet", max_steps=2, eval_every=2, device="cpu", amp=True),
            tiny(), progress=False)
    assert r.config["amp_dtype"] == "bfloat16"
    r = fit(TrainConfig(model="lenet", max_steps=2, eval_every=2, device="cpu"), tiny(),
            progress=False)
    assert r.config["amp"] is False and r.config["amp_dtype"] is None


# --- --device cuda:0 in a fresh process --------------------------------------

def test_the_peak_memory_reset_starts_cuda_first(monkeypatch):
    """In a fresh process the caching allocator exists only once CUDA has
    started; resetting its statistics before then fails for cuda:0."""
    started = []
    monkeypatch.setattr(torch.cuda, "init", lambda: started.append(True))

    def reset(device=None):
        if not started:
            raise RuntimeError("Invalid device argument 0: did you call init?")
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    assert reset_peak_memory(torch.device("cuda:0")) is False  # no CPU RSS to reset


@needs_cuda
def test_cuda_0_trains_in_a_fresh_process(tmp_path):
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "cnnlab", "train", "lenet", "--device",
                           "cuda:0", "--max-steps", "3", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["config"]["device"] == "cuda:0"


# --- throughput at steady state ----------------------------------------------

def test_images_per_second_leaves_out_the_first_steps_one_off_cost(monkeypatch):
    calls = []

    def slow_first_step(logits, targets):  # a compile or an autotuning stands in
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.0)
        return F.cross_entropy(logits, targets)

    monkeypatch.setattr(train, "loss_fn", slow_first_step)
    r = fit(TrainConfig(model="lenet", batch_size=10, max_steps=4, eval_every=4,
                        device="cpu"), tiny(), progress=False)
    assert r.first_step_seconds >= 1.0
    steady = r.train_seconds - r.first_step_seconds
    assert r.images_per_second == pytest.approx(30 / steady)  # steps 2-4, 10 images each
    assert r.images_per_second > 2 * 40 / r.train_seconds  # the sleep is not in it


# --- peak memory: training's, not the test pass's ------------------------------

def _vm_hwm() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_the_peak_is_trainings_not_the_test_passs(monkeypatch):
    data = tiny()
    real = train.evaluate_with_predictions
    hog_peak = []

    def test_pass_with_a_hog(model, split, *args, **kwargs):
        if split.images.data_ptr() == data.test.images.data_ptr():  # the test pass
            hog = torch.ones(2**27)  # 512 MiB, touched
            hog_peak.append(_vm_hwm())
            del hog
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(train, "evaluate_with_predictions", test_pass_with_a_hog)
    r = fit(TrainConfig(model="lenet", max_steps=2, eval_every=2, device="cpu"), data,
            progress=False)
    if r.peak_memory_kind != "process_peak_rss_during_run":
        pytest.skip("this system cannot reset the peak RSS (not Linux)")
    assert hog_peak and r.peak_memory_bytes < hog_peak[0] - 256 * 2**20


# --- out of memory -----------------------------------------------------------

def test_the_cache_is_emptied_after_the_except_block_once_the_step_is_freed(monkeypatch):
    activations = []

    def step(model, optimizer, x, y, micro, amp, scaler):
        if micro == len(y):  # the whole batch does not fit
            held = torch.ones(1000)  # the failed step's activations, held by its frame
            activations.append(weakref.ref(held))
            raise OOM("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.zeros(())

    emptied = []

    def free(device):
        # Not while the OOM is being handled (an exception a test before this
        # one left in sys.exc_info is no concern of halve_on_oom's).
        assert not isinstance(sys.exc_info()[1], OOM), "emptied inside the except block"
        assert activations[0]() is None, "the failed step's tensors are still held"
        emptied.append(device)

    monkeypatch.setattr(cnnlab.oom, "free_cached_memory", free)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, micro = halve_on_oom(step, model, optimizer, torch.zeros(8, 2),
                               torch.zeros(8, dtype=torch.long), 8, None, 0)
    assert micro == 4 and len(emptied) == 1


class OomAbove(nn.Module):
    """``inner``, but out of memory for batches of more than ``limit`` images."""

    def __init__(self, inner: nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit, self.batches = inner, limit, []

    def forward(self, x):
        self.batches.append(len(x))
        if len(x) > self.limit:
            raise OOM("CUDA out of memory. Tried to allocate 4.00 GiB")
        return self.inner(x)


def test_evaluate_halves_its_batch_on_out_of_memory(mnist):
    torch.manual_seed(0)
    model = get_model("lenet")
    split = mnist.val.head(50)
    small_batches = evaluate(model, split, batch_size=8)
    wrapped = OomAbove(model, limit=8)
    loss, accuracy = evaluate(wrapped, split, batch_size=32)  # 32 fails, 16 fails, 8 fits
    assert (loss, accuracy) == small_batches
    assert wrapped.batches[:2] == [32, 16] and set(wrapped.batches[2:]) == {8, 2}


def test_out_of_memory_in_the_optimizer_step_is_not_retried_smaller():
    class OomOnStep(torch.optim.SGD):
        def step(self, closure=None):
            raise OOM("CUDA out of memory. Tried to allocate 1.00 GiB")

    model = OomAbove(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), limit=10**6)
    optimizer = OomOnStep(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    with pytest.raises(OptimizerOutOfMemoryError, match="optimiser step.*cannot shrink"):
        halve_on_oom(train_step, model, optimizer, x, y, 16, None, 0)
    assert model.batches == [16]  # one try: halving the micro-batch cannot help


# --- MPS ---------------------------------------------------------------------

def test_timings_wait_for_mps(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: waited.append(True))
    bench.sync(torch.device("mps"))
    assert waited == [True]


def test_mps_is_treated_like_cuda_no_finite_check_every_step():
    assert bench.runs_async(torch.device("mps")) and bench.runs_async(torch.device("cuda"))
    assert not bench.runs_async(torch.device("cpu"))


def test_the_mps_memory_figure_is_named_as_current_not_a_peak(monkeypatch):
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 12345)
    number, kind = peak_memory(torch.device("mps"), False)
    assert number == 12345 and "current" in kind and "peak" not in kind


# --- deterministic=True, and every global given back --------------------------

def _modes() -> tuple:
    return (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
            torch.are_deterministic_algorithms_enabled(),
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


def test_deterministic_runs_with_deterministic_algorithms_and_gives_them_back(monkeypatch):
    during = []

    def spy(logits, targets):
        during.append(torch.are_deterministic_algorithms_enabled())
        return F.cross_entropy(logits, targets)

    monkeypatch.setattr(train, "loss_fn", spy)
    before = _modes()
    fit(TrainConfig(model="lenet", max_steps=2, eval_every=2, device="cpu",
                    deterministic=True), tiny(), progress=False)
    assert during == [True, True]
    assert _modes() == before


def test_the_modes_are_given_back_when_the_run_raises(monkeypatch):
    def fails(logits, targets):
        assert torch.are_deterministic_algorithms_enabled()
        raise ValueError("a bug in the step")

    monkeypatch.setattr(train, "loss_fn", fails)
    before = _modes()
    with pytest.raises(ValueError, match="a bug in the step"):
        fit(TrainConfig(model="lenet", max_steps=2, device="cpu", deterministic=True),
            tiny(), progress=False)
    assert _modes() == before


@pytest.mark.parametrize("deterministic", [True, False])
def test_the_cuda_settings_are_made_and_given_back(deterministic, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = _modes()
    with cnnlab.device.restoring_global_modes():
        cnnlab.device.set_kernel_modes(torch.device("cuda"), deterministic)
        assert torch.backends.cudnn.benchmark is not deterministic  # the autotuner
        assert torch.backends.cudnn.deterministic is deterministic
        assert torch.are_deterministic_algorithms_enabled() is deterministic
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == (
            ":4096:8" if deterministic else None)
    assert _modes() == before


# --- torch.compile -----------------------------------------------------------

@pytest.fixture
def aot_eager(monkeypatch):
    """torch.compile with the aot_eager backend (no C++ compiler needed, quick),
    and every recompilation an error."""
    import torch._dynamo

    real = torch.compile
    try:
        real(lambda t: t + 1, backend="aot_eager")(torch.zeros(2))
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"torch.compile is unavailable here: {one_line(err)}")
    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(real, backend="aot_eager"))
    with torch._dynamo.config.patch(error_on_recompile=True):
        yield
    torch._dynamo.reset()


def test_compile_takes_the_short_last_batch_and_micro_batches_without_recompiling(aot_eager):
    # Batches of 16 images or more: on a CPU the convolution's kernel choice
    # (oneDNN or not) depends on whether a batch has 16 images, so smaller
    # batches compile again here for that reason alone (not on a GPU).
    # 80 images in batches of 32: 32, 32, then a short batch of 16.
    r = fit(TrainConfig(model="lenet", batch_size=32, epochs=1, eval_every=100,
                        device="cpu", compile=True), tiny(n_train=80), progress=False)
    assert len(r.train_loss) == 3
    torch._dynamo.reset()
    model = get_model("lenet")
    step_model = compiled(model)
    optimizer = torch.optim.AdamW(model.parameters())
    x, y = torch.randn(40, 1, 28, 28), torch.randint(0, 10, (40,))
    train_step(step_model, optimizer, x, y, micro_batch=40, amp=None)
    train_step(step_model, optimizer, x, y, micro_batch=20, amp=None)  # halved: 20, 20
    train_step(step_model, optimizer, x[:36], y[:36], micro_batch=18, amp=None)


def _compile_raising(error: Exception):
    def broken_compile(model, **kwargs):
        def call(x):
            raise error
        return call
    return broken_compile


def test_only_errors_raised_while_compiling_are_called_compile_failures(monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    config = TrainConfig(model="lenet", max_steps=1, device="cpu", compile=True)
    runtime = RuntimeError("CUDA error: an illegal memory access was encountered")
    monkeypatch.setattr(torch, "compile", _compile_raising(runtime))
    with pytest.raises(RuntimeError) as err:
        fit(config, tiny(), progress=False)
    assert err.value is runtime and not isinstance(err.value, CompileError)
    class InvalidCxxCompiler(RuntimeError):  # as torch._inductor raises it
        pass

    failed = BackendCompilerFailed(lambda: None, InvalidCxxCompiler("No working C++ "
                                                                    "compiler"), None)
    monkeypatch.setattr(torch, "compile", _compile_raising(failed))
    with pytest.raises(CompileError, match="torch.compile failed: InvalidCxxCompiler"):
        fit(config, tiny(), progress=False)


# --- no host sync in a training step ------------------------------------------

SYNC_OPS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default}


class NoHostSync(TorchDispatchMode):
    """Fail on any op that reads a value back to Python (``.item()``, ``bool()``,
    ``nonzero``): on a GPU, each makes the CPU wait for the device."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNC_OPS:
            raise AssertionError(f"host sync in a training step: {func}")
        return func(*args, **(kwargs or {}))


class GuardedStopwatch(bench.Stopwatch):
    """The run's clock, with NoHostSync on whenever it runs: the clock runs
    through the training steps and stops for validation, which reads its
    scores back by design."""

    active: list = []

    def start(self) -> None:
        super().start()
        mode = NoHostSync()
        mode.__enter__()
        GuardedStopwatch.active.append(mode)

    def stop(self) -> None:
        if self.started is not None and GuardedStopwatch.active:
            GuardedStopwatch.active.pop().__exit__(None, None, None)
        super().stop()


@pytest.mark.parametrize("amp", [None, torch.bfloat16, torch.float16],
                         ids=["fp32", "bf16", "fp16-scaler"])
def test_a_training_step_does_no_host_sync_on_the_gpu_path(amp, monkeypatch):
    real_adamw = torch.optim.AdamW
    monkeypatch.setattr(train, "runs_async", lambda device: True)  # the loop's GPU branch
    monkeypatch.setattr(train, "Stopwatch", GuardedStopwatch)
    monkeypatch.setattr(train, "autocast_dtype", lambda device, enabled: amp)
    # As on CUDA: fused AdamW, whose step count stays on the device.
    monkeypatch.setattr(torch.optim, "AdamW",
                        lambda *a, **k: real_adamw(*a, **(k | {"fused": True})))
    try:
        r = fit(TrainConfig(model="lenet", batch_size=8, max_steps=6, eval_every=3,
                            device="cpu"), tiny(), progress=False)
    finally:
        while GuardedStopwatch.active:  # a failed run leaves its mode on: take it off
            GuardedStopwatch.active.pop().__exit__(None, None, None)
    assert len(r.train_loss) == 6


@needs_cuda
def test_a_cuda_training_step_does_no_host_sync(monkeypatch):
    real = train.train_step

    def guarded(*args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return real(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(train, "train_step", guarded)
    fit(TrainConfig(model="resnet18", max_steps=4, eval_every=4, val_images=100,
                    test_images=100), tiny(), progress=False)


# --- evaluate: the model's device decides ---------------------------------------

def test_evaluate_feeds_the_model_on_the_models_device():
    class Stop(Exception):
        pass

    class OnMeta(nn.Module):  # the meta device stands in for a GPU
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1, device="meta"))
            self.seen = []

        def forward(self, x):
            self.seen.append(x.device)
            raise Stop

    model = OnMeta()
    with pytest.raises(Stop):
        evaluate(model, tiny().test)  # the split on the CPU
    assert model.seen == [torch.device("meta")]


@needs_cuda
def test_evaluate_a_gpu_model_on_a_cpu_split(mnist):
    model = get_model("lenet")
    on_cpu = evaluate(model, mnist.val.head(500))
    on_gpu = evaluate(model.cuda(), mnist.val.head(500))
    assert on_gpu == (pytest.approx(on_cpu[0], rel=1e-4), pytest.approx(on_cpu[1]))


@needs_cuda
def test_fp16_with_a_grad_scaler_trains_on_cuda(monkeypatch):
    monkeypatch.setattr(train, "autocast_dtype", lambda device, enabled: torch.float16)
    r = fit(TrainConfig(model="resnet18", max_steps=5, eval_every=5, val_images=100,
                        test_images=100), tiny(), progress=False)
    assert r.config["amp_dtype"] == "float16" and all(map(torch.isfinite,
                                                          torch.tensor(r.train_loss)))


# --- benchmarks: results written as they come ----------------------------------

def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_writes_its_json_after_each_model_and_records_failures(tmp_path, monkeypatch):
    speed = _load_script("speed")

    def measure(name, args, device):
        if name == "resnet18":
            raise KeyboardInterrupt  # the call's time ran out during the second model
        return [speed.attempt(name, "cnnlab", lambda: {"seconds": 1.0, "images_per_s": 5.0,
                                                       "first_step_s": 0.1}),
                speed.attempt(name, "+compile", lambda: 1 / 0)]

    monkeypatch.setattr(speed, "measure", measure)
    out = tmp_path / "speed.json"
    monkeypatch.setattr(sys, "argv", ["speed.py", "--models", "lenet", "resnet18",
                                      "--device", "cpu", "--json", str(out)])
    with pytest.raises(KeyboardInterrupt):
        speed.main()
    saved = json.loads(out.read_text())
    assert saved["models_done"] == ["lenet"] and saved["models_left"] == ["resnet18"]
    assert [r["error"] for r in saved["rows"]] == [None, "ZeroDivisionError: division by zero"]


@pytest.mark.slow
def test_gpu_session_killed_mid_way_keeps_every_finished_model(tmp_path):
    """The dry run of the record part, killed during its second model."""
    out = tmp_path / "out"
    env = os.environ | {"QUICK": "1", "OUT": str(out), "PY": sys.executable,
                        "MODELS": "lenet mobilenet_v1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(["bash", "benchmarks/gpu_session.sh", "record"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    status = out / "record-status.tsv"
    try:
        deadline = time.monotonic() + 300
        while "lenet\t" not in (status.read_text() if status.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, "lenet never finished"
            time.sleep(1)
        time.sleep(3)  # well into mobilenet_v1
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole session: bash and its python
        proc.wait()
    lines = status.read_text().splitlines()
    assert lines[1].startswith("lenet\tok\t") and len(lines) == 2
    runs = sorted((out / "runs" / "lenet").glob("*.json"))
    assert [p.name for p in runs] == [f"lenet-3steps-cpu-seed{s}.json" for s in (42, 43, 44)]
    for path in runs:
        assert json.loads(path.read_text())["model"] == "lenet"  # whole, parseable
