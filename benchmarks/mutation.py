"""Mutation check: do the fast tests catch realistic one-line bugs?

Each mutation below is a bug someone could plausibly write (many were met
in review): a wrong line in the models, the data, the training loop, the
checkpoints, the results, the exercise checkers or the command line. The
script clones the repository into a temporary folder, applies one
mutation at a time there (never here), runs the fast unit tests

    pytest tests -m "not slow" -x -q -p no:cacheprovider

(leaving out ``IGNORED``: the check of this list's own anchors) with
this repository's Python but the clone first on the import path (the
clone's ``cnnlab`` is what the tests import; the script checks), and
reports which mutations the tests caught and which survived.

    python benchmarks/mutation.py             # all of them (about an hour on 2 cores)
    python benchmarks/mutation.py --list      # the mutations, nothing run
    python benchmarks/mutation.py --check     # every anchor found exactly once, nothing run
    python benchmarks/mutation.py -k resnet -k data   # those whose id contains a word
    python benchmarks/mutation.py --tests tests/test_oracles.py  # a quicker subset of tests
    python benchmarks/mutation.py --hints results/benchmarks/mutation-*.json  # re-measure

With ``--hints``, each mutation first runs alone the test that caught it in
an earlier outcome; only if that test passes does the whole suite run. The
verdicts are the same (a catch is a test that fails with the bug and passed
in the unmutated run), found sooner: the suite is ordered by file name and
runs to its first failure, so a bug caught by a late file otherwise costs a
whole suite.

By default the clone gets this checkout's uncommitted changes too (what is
on disk is what is measured); ``--committed`` measures HEAD alone. Before
any mutation the unmutated clone must pass the same tests, or the script
stops: a survivor means nothing against a red suite. Every mutation's
anchor (its exact old text) must occur exactly once in its file, or the
script stops before running anything.

Not part of ``make test``: it runs the fast suite once per mutation.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    id: str     # short name, unique
    file: str   # path relative to the repository root
    old: str    # exact text, found exactly once in the file
    new: str    # what replaces it
    why: str    # the bug, in words


M = Mutation
MUTATIONS = [
    # --- models ------------------------------------------------------------------
    M("resnet-relu-before-add", "cnnlab/models/resnet.py",
      "return F.relu(self.residual(x) + self.shortcut(x))",
      "return F.relu(self.residual(x)) + self.shortcut(x)",
      "ResNet block: ReLU applied to F(x) before the addition, not after"),
    M("resnet-stem-bn-after-relu", "cnnlab/models/resnet.py",
      "self.maxpool(F.relu(self.bn1(self.conv1(x))))",
      "self.maxpool(self.bn1(F.relu(self.conv1(x))))",
      "ResNet stem: BN after its ReLU"),
    M("resnet-no-inner-relu", "cnnlab/models/resnet.py",
      "out = F.relu(self.bn1(self.conv1(x)))",
      "out = self.bn1(self.conv1(x))",
      "ResNet block: the ReLU between the two convs forgotten"),
    M("resnet-zero-pad-front", "cnnlab/models/resnet.py",
      "F.pad(x, (0, 0, 0, 0, 0, self.extra))",
      "F.pad(x, (0, 0, 0, 0, self.extra, 0))",
      "option A shortcut: the zero channels padded in front of x, not after"),
    M("resnet-reuse-stride", "cnnlab/models/resnet.py",
      "stride=self.conv1.stride, padding=1)",
      "stride=self.conv1.stride, padding=0)",
      "the report's shortcut convolves without padding (shifts the maps)"),
    M("resnet-nearest", "cnnlab/models/resnet.py",
      'nn.Upsample(scale_factor=upsample, mode="bilinear")',
      'nn.Upsample(scale_factor=upsample, mode="nearest")',
      "ResNet upsamples with nearest-neighbour, not bilinear"),
    M("resnet-init-fan-in", "cnnlab/models/resnet.py",
      'mode="fan_out", nonlinearity="relu"',
      'mode="fan_in", nonlinearity="relu"',
      "ResNet's convs initialised for fan_in, not torchvision's fan_out"),
    M("lenet-avgpool", "cnnlab/models/lenet.py",
      "nn.MaxPool2d(2),                           # S2",
      "nn.AvgPool2d(2),                           # S2",
      "LeNet S2 average-pools (the 1998 paper's subsampling) instead of max-pooling"),
    M("lenet-tanh", "cnnlab/models/lenet.py",
      'ACTIVATIONS = {"sigmoid": nn.Sigmoid,',
      'ACTIVATIONS = {"sigmoid": nn.Tanh,',
      "LeNet's 'sigmoid' activation is a tanh"),
    M("alexnet-conv-no-relu", "cnnlab/models/alexnet.py",
      "return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU(inplace=True)]",
      "return [nn.Conv2d(cin, cout, kernel, stride, padding)]",
      "AlexNet convs without their ReLU"),
    M("alexnet-dropout-after-fc", "cnnlab/models/alexnet.py",
      "        nn.Linear(4096, 4096),\n        nn.ReLU(inplace=True),\n"
      "        nn.Linear(4096, num_classes),",
      "        nn.Linear(4096, 4096),\n        nn.ReLU(inplace=True),\n"
      "        nn.Dropout(dropout), nn.Linear(4096, num_classes),",
      "AlexNet: a third dropout, before the output layer"),
    M("mobilenet-no-groups", "cnnlab/models/mobilenet.py",
      "self.depthwise = conv_bn(cin, cin, 3, stride, groups=cin)",
      "self.depthwise = conv_bn(cin, cin, 3, stride)",
      "MobileNet's depthwise conv is a full conv (groups forgotten)"),
    M("mobilenet-relu6", "cnnlab/models/mobilenet.py",
      "nn.BatchNorm2d(cout),\n        nn.ReLU(inplace=True),",
      "nn.BatchNorm2d(cout),\n        nn.ReLU6(inplace=True),",
      "MobileNetV1 with V2's ReLU6"),
    M("mobilenet-dropout-fixed", "cnnlab/models/mobilenet.py",
      "self.dropout = nn.Dropout(dropout)",
      "self.dropout = nn.Dropout(0.5)",
      "MobileNet ignores its dropout argument"),
    M("googlenet-branch-order", "cnnlab/models/googlenet.py",
      "branches = [self.branch1, self.branch2, self.branch3, self.branch4]",
      "branches = [self.branch1, self.branch3, self.branch2, self.branch4]",
      "Inception concatenates its branches in the wrong order"),
    M("googlenet-padded-pools", "cnnlab/models/googlenet.py",
      "return nn.MaxPool2d(3, 2, ceil_mode=True)",
      "return nn.MaxPool2d(3, 2, padding=1)",
      "GoogLeNet's stride-2 pools padded instead of rounding up"),
    M("googlenet-no-lrn", "cnnlab/models/googlenet.py",
      "lrn(), _pool(),",
      "_pool(),",
      "GoogLeNet's second LRN dropped"),
    # --- data ---------------------------------------------------------------------
    M("data-labels-shifted", "cnnlab/data.py",
      "train=Split(images[train_idx], labels[train_idx]),",
      "train=Split(images[train_idx], labels[train_idx].roll(1)),",
      "training labels shifted by one example"),
    M("data-drop-last", "cnnlab/data.py",
      "for start in range(skip * self.batch_size, n, self.batch_size):",
      "for start in range(skip * self.batch_size, n - self.batch_size + 1, self.batch_size):",
      "the last short batch of an epoch skipped"),
    M("data-labels-unshuffled", "cnnlab/data.py",
      "images, labels = self.split.images[idx], self.split.labels[idx]",
      "images, labels = self.split.images[idx], self.split.labels[start:start + self.batch_size]",
      "images shuffled, labels left in stored order"),
    M("data-same-order-every-epoch", "cnnlab/data.py",
      "order = torch.randperm(n, generator=self.generator).to(device)",
      "order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(device)",
      "the same shuffle every epoch"),
    M("data-no-scaling", "cnnlab/data.py",
      "x = images.float().div_(255.0).sub_(MEAN).div_(STD)",
      "x = images.float().sub_(MEAN).div_(STD)",
      "pixels standardised without the / 255"),
    M("data-split-overlap", "cnnlab/data.py",
      "return perm[: n - n_val], perm[n - n_val:]",
      "return perm[: n - n_val + 1], perm[n - n_val:]",
      "one image in both training and validation"),
    M("data-std-is-variance", "cnnlab/data.py",
      "STD = 0.3081078038564622",
      "STD = 0.3081078038564622 ** 2",
      "the variance used as the standard deviation"),
    M("data-classic-unshuffled", "cnnlab/data.py",
      "DataLoader(train, batch_size, shuffle=True,",
      "DataLoader(train, batch_size, shuffle=False,",
      "the classic DataLoader's training set not shuffled"),
    # --- training -----------------------------------------------------------------
    M("train-validate-on-test", "cnnlab/train.py",
      "val if whole else val_between",
      "test if whole else val_between",
      "validation during training run on the test set"),
    M("train-evaluate-in-train-mode", "cnnlab/train.py",
      "with eval_mode(model):",
      "with nullcontext():",
      "evaluate does not switch to eval mode"),
    M("train-micro-batch-equal-weights", "cnnlab/train.py",
      "loss = loss * (len(ys) / n)",
      "loss = loss / math.ceil(n / micro_batch)",
      "micro-batch losses averaged equally, not weighted by their size"),
    M("train-no-zero-grad", "cnnlab/train.py",
      "    optimizer.zero_grad(set_to_none=True)\n    n = len(y)",
      "    n = len(y)",
      "gradients never zeroed between steps"),
    M("train-floor-steps", "cnnlab/train.py",
      "per_epoch = len(batches)",
      "per_epoch = len(data.train) // config.batch_size",
      "steps per epoch rounded down: the short batch drifts into the next epoch"),
    M("train-adam", "cnnlab/train.py",
      "optimizer = torch.optim.AdamW(",
      "optimizer = torch.optim.Adam(",
      "Adam (L2 in the gradient) instead of AdamW (decoupled weight decay)"),
    M("train-order-ignores-seed", "cnnlab/train.py",
      "seed=config.seed)",
      "seed=0)",
      "the data order ignores the run's seed"),
    M("train-weight-decay-default", "cnnlab/train.py",
      "weight_decay: float = 0.01",
      "weight_decay: float = 0.0",
      "the recipe's AdamW without weight decay"),
    M("train-unseeded-torch", "cnnlab/device.py",
      "torch.manual_seed(seed)  # also seeds every CUDA device",
      "pass",
      "set_seed leaves torch unseeded"),
    M("train-rng-not-restored", "cnnlab/checkpoint.py",
      'set_rng_states(saved["rng"])',
      "pass",
      "resume does not restore the global random state"),
    M("train-order-not-restored", "cnnlab/state.py",
      "batches.generator.set_state(saved.generator_state)",
      "pass",
      "resume does not restore the data order"),
    M("budget-short-on-gpu", "cnnlab/budget.py",
      'return "full" if torch.cuda.is_available() else "short"',
      'return "short" if torch.cuda.is_available() else "full"',
      "chapters train the full recipe on a CPU and the short budget on a GPU"),
    # --- checkpoints --------------------------------------------------------------
    M("checkpoint-any-seed", "cnnlab/checkpoint.py",
      '"lr", "weight_decay", "seed", "dropout",',
      '"lr", "weight_decay", "dropout",',
      "resume accepts a different seed"),
    M("checkpoint-numpy-rng", "cnnlab/checkpoint.py",
      "np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))",
      "pass",
      "NumPy's random state not restored on resume"),
    M("checkpoint-in-place", "cnnlab/checkpoint.py",
      'with atomic_write(path) as tmp, open(tmp, "wb") as f:',
      'with open(path, "wb") as f:',
      "the checkpoint written in place: a failed write destroys the previous one"),
    # --- results and provenance -----------------------------------------------------
    M("results-no-commit", "cnnlab/provenance.py",
      '"git_commit": git_commit(),',
      '"git_commit": None,',
      "provenance without the commit"),
    M("results-dirty-as-clean", "cnnlab/provenance.py",
      'commit + ("+dirty" if dirty else "")',
      "commit",
      "a dirty tree recorded as clean"),
    M("results-short-commit-drops-dirty", "cnnlab/provenance.py",
      'return sha[:12] + ("+dirty" if dirty else "")',
      "return sha[:12]",
      "the dirty mark lost when a commit is shortened for the page"),
    M("results-accuracy-not-percent", "cnnlab/results.py",
      "| {r.model} | {100 * r.test_accuracy:.2f} |",
      "| {r.model} | {r.test_accuracy:.2f} |",
      "the comparison table prints a fraction under '(%)'"),
    M("results-in-place", "cnnlab/results.py",
      "return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))",
      "Path(path).write_text(json.dumps(self.to_dict(), indent=1)); return Path(path)",
      "the result written in place: a failed write destroys the previous one"),
    M("files-no-fsync", "cnnlab/files.py",
      "_fsync(tmp)  # the bytes reach the disk",
      "pass  # the bytes reach the disk",
      "renamed into place before the bytes are on disk"),
    # --- exercise checkers ------------------------------------------------------------
    M("checker-float-tolerance", "cnnlab/exercises/_harness.py",
      "REL_TOL = 1e-6",
      "REL_TOL = 1e-2",
      "ratio answers accepted within 1 %"),
    M("checker-normalise-tolerance", "cnnlab/exercises/data.py",
      "NORMALISE_ATOL = 1e-3",
      "NORMALISE_ATOL = 1e-1",
      "normalise answers accepted up to 0.1 off"),
    M("checker-batches-short-batch", "cnnlab/exercises/data.py",
      "expected_sizes = [batch_size] * full + ([rest] if rest else [])",
      "expected_sizes = [batch_size] * full",
      "the batches checker expects the short batch dropped"),
    M("checker-googlenet-3x3", "cnnlab/exercises/googlenet.py",
      "if not any(c.kernel_size == (5, 5)",
      "if not any(c.kernel_size in ((5, 5), (3, 3))",
      "the Inception checker accepts a 3x3 conv in the 5x5 branch"),
    M("checker-block-eval-only", "cnnlab/exercises/resnet.py",
      "for training in (False, True):",
      "for training in (False,):",
      "the residual-block checker compares eval mode only"),
    M("checker-lenet-pad-width-only", "cnnlab/exercises/lenet.py",
      "(padding,) * 4)",
      "(padding,) * 2)",
      "the flatten-size oracle pads the width only"),
    M("checker-macs-upside-down", "cnnlab/exercises/mobilenet.py",
      "expected = macs[0] / macs[1]",
      "expected = macs[1] / macs[0]",
      "the mult-adds checker expects standard / separable"),
    # --- command line ---------------------------------------------------------------
    M("cli-file-without-seed", "cnnlab/results.py",
      'device.replace(":", ""), f"seed{config.seed}"]',
      'device.replace(":", "")]',
      "result files not named by seed: compare --seeds overwrites them"),
    M("cli-resume-dropped", "cnnlab/__main__.py",
      'resume=getattr(args, "resume", False))',
      "resume=False)",
      "--resume not passed on"),
    M("cli-no-seed-summary", "cnnlab/__main__.py",
      "if args.seeds and len(args.seeds) > 1:",
      "if args.seeds and len(args.seeds) > 2:",
      "compare with two seeds prints no per-model summary"),
    M("cli-eval-all-ignored", "cnnlab/__main__.py",
      "eval_subset=None if args.eval_all else args.eval_subset,",
      "eval_subset=args.eval_subset,",
      "--eval-all ignored"),
    M("cli-upsample-ignored", "cnnlab/__main__.py",
      'OPTION_FLAGS = {"shortcut": "--shortcut", "upsample": "--upsample",',
      'OPTION_FLAGS = {"shortcut": "--shortcut",',
      "--upsample ignored"),
    M("cli-dropout-ignored", "cnnlab/__main__.py",
      "dropout=args.dropout,",
      "dropout=None,",
      "--dropout ignored"),
    # --- a second batch, written after the first was all caught: more of the
    # --- everyday slips (a mode not restored, a number ignored, a wrong mean)
    M("models-mode-not-restored", "cnnlab/models/__init__.py",
      "model.train(was_training)",
      "model.train(training)",
      "eval_mode leaves the model in eval mode (dropout stays off in training)"),
    # (Striding on every repeat would be an equivalent mutant: in the paper's
    # table no stride-2 row repeats, so the network would not change.)
    M("mobilenet-stride-on-later-repeats", "cnnlab/models/mobilenet.py",
      "stride if i == 0 else 1",
      "1 if i == 0 else stride",
      "MobileNet strides on the later repeats of a stage, not the first"),
    M("resnet-downsample-no-bn", "cnnlab/models/resnet.py",
      "nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))",
      "nn.Sequential(conv1x1(cin, cout, stride))",
      "option B's projection shortcut without its BatchNorm"),
    M("lenet-sigmoid-on-logits", "cnnlab/models/lenet.py",
      "nn.Linear(84, num_classes),  # logits",
      "nn.Linear(84, num_classes), act(),  # logits",
      "LeNet squashes its logits through the activation"),
    M("googlenet-dropout-on-logits", "cnnlab/models/googlenet.py",
      "return self.fc(self.dropout(x))",
      "return self.dropout(self.fc(x))",
      "GoogLeNet's dropout applied to the logits, not before the classifier"),
    M("data-mean-std-swapped", "cnnlab/data.py",
      "x = images.float().div_(255.0).sub_(MEAN).div_(STD)",
      "x = images.float().div_(255.0).sub_(STD).div_(MEAN)",
      "the mean and the standard deviation swapped in the normalisation"),
    M("data-head-takes-tail", "cnnlab/data.py",
      "Split(self.images[:n], self.labels[:n])",
      "Split(self.images[-n:], self.labels[-n:])",
      "head(n) returns the last n examples"),
    M("train-lr-ignored", "cnnlab/train.py",
      "optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,",
      "optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3,",
      "the configured learning rate ignored"),
    M("train-test-on-val", "cnnlab/train.py",
      "model, test, config.eval_batch_size, amp=amp, channels_last=channels_last)",
      "model, val, config.eval_batch_size, amp=amp, channels_last=channels_last)",
      "the test accuracy measured on the validation split"),
    M("train-eval-loss-batch-mean", "cnnlab/train.py",
      'F.cross_entropy(logits.float(), y, reduction="sum")',
      "F.cross_entropy(logits.float(), y)",
      "evaluate sums batch means and divides by the image count"),
    M("train-epoch-end-on-subset", "cnnlab/train.py",
      "whole = at_epoch_end or at_last",
      "whole = at_last",
      "epoch-end validation on the small subset, not all 12,000 images"),
    M("train-max-steps-plus-one", "cnnlab/train.py",
      "total = min(total, config.max_steps)",
      "total = min(total, config.max_steps + 1)",
      "max_steps trains one step too many"),
    M("train-no-epoch-checkpoint", "cnnlab/train.py",
      "if whole and checkpoint is not None:",
      "if at_last and checkpoint is not None:",
      "the checkpoint written only at the last step, not at each epoch end"),
    M("train-optimizer-not-restored", "cnnlab/checkpoint.py",
      'optimizer.load_state_dict(saved["optimizer_state"])',
      'saved["optimizer_state"]',
      "resume restores the weights but not AdamW's moments"),
    M("train-images-per-second-full-batches", "cnnlab/state.py",
      "return full_epochs * len(batches.split) + rest * batches.batch_size",
      "return steps * batches.batch_size",
      "images counted as if every batch were full"),
    M("checkpoint-any-lr", "cnnlab/checkpoint.py",
      '"model", "batch_size", "lr", "weight_decay"',
      '"model", "batch_size", "weight_decay"',
      "resume accepts a different learning rate"),
    M("records-verdict-one-spread", "cnnlab/findings.py",
      "if abs(gap) <= 2 * max(a.std, b.std):",
      "if abs(gap) <= max(a.std, b.std):",
      "arms called apart at one standard deviation, not two"),
    M("records-population-std", "cnnlab/findings.py",
      "statistics.stdev(self.values) if self.n > 1",
      "statistics.pstdev(self.values) if self.n > 1",
      "the seeds' spread as a population standard deviation"),
    M("results-table-population-std", "cnnlab/results.py",
      "std = statistics.stdev(acc) if len(acc) > 1",
      "std = statistics.pstdev(acc) if len(acc) > 1",
      "the comparison table's std as a population standard deviation"),
    M("cli-lr-ignored", "cnnlab/__main__.py",
      "lr=args.lr, seed=",
      "lr=1e-3, seed=",
      "--lr ignored"),
    M("cli-epochs-ignored", "cnnlab/__main__.py",
      "TrainConfig(model=model, epochs=args.epochs,",
      "TrainConfig(model=model, epochs=5,",
      "--epochs ignored"),
    M("cli-compare-seeds-ignored", "cnnlab/__main__.py",
      "seed=args.seed if seed is None else seed,",
      "seed=args.seed,",
      "compare --seeds trains every run with --seed"),
]


def check_anchors(root: Path, mutations: list[Mutation]) -> list[str]:
    """One message per mutation whose old text is not in its file exactly once."""
    problems = []
    for m in mutations:
        path = root / m.file
        if not path.is_file():
            problems.append(f"{m.id}: {m.file} does not exist")
            continue
        count = path.read_text().count(m.old)
        if count != 1:
            problems.append(f"{m.id}: the anchor occurs {count} times in {m.file} "
                            f"(needs exactly 1): {m.old!r}")
    return problems


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, text=True,
                          capture_output=True).stdout


def make_clone(dest: Path, committed: bool) -> None:
    """A fresh clone of this repository; with this checkout's uncommitted
    changes on top unless ``committed``."""
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(dest)], check=True)
    if committed:
        return
    changed = _git("ls-files", "-z", "--modified", "--others", "--exclude-standard",
                   cwd=ROOT).split("\0")
    deleted = set(_git("ls-files", "-z", "--deleted", cwd=ROOT).split("\0"))
    for name in filter(None, changed):
        src, dst = ROOT / name, dest / name
        if name in deleted or not src.exists():
            dst.unlink(missing_ok=True)
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def test_env(clone: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(clone)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("CNNLAB_DATA", None)  # the clone's own data cache: never write to ours
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def verify_import(clone: Path, env: dict[str, str]) -> None:
    """The clone's cnnlab, not this checkout's (installed editable), is imported."""
    out = subprocess.run(
        [sys.executable, "-c", "import cnnlab, cnnlab.train, cnnlab.models.resnet as r; "
         "print(cnnlab.__file__); print(cnnlab.train.__file__); print(r.__file__)"],
        cwd=clone, env=env, capture_output=True, text=True, check=True).stdout.split()
    for path in out:
        if not Path(path).resolve().is_relative_to(clone.resolve()):
            sys.exit(f"mutation: the tests would import {path}, not the clone's cnnlab")


LAST_OUTPUT = {"text": ""}  # the latest pytest output, for a failing baseline's report

# Left out of every run: tests/test_mutation_list.py checks that each
# mutation's anchor is in the checkout, and a mutant has replaced its own
# anchor, so that test would "catch" every mutation without testing anything.
IGNORED = ["tests/test_mutation_list.py"]


def run_tests(clone: Path, env: dict[str, str], tests: list[str], timeout: float,
              first_failure: bool = True) -> tuple[str, list[str], float]:
    """(outcome, failed test ids or a last line, seconds); outcome is 'passed',
    'failed', 'error' (collection, import) or 'timeout'."""
    cmd = [sys.executable, "-m", "pytest", *tests, "-m", "not slow", "-q",
           "-p", "no:cacheprovider", *(f"--ignore={path}" for path in IGNORED)]
    cmd += ["-x"] if first_failure else []
    start = time.perf_counter()
    # (Started from a background job, pytest inherits SIGINT ignored;
    # tests/conftest.py gives Ctrl-C back to the signal tests.)
    proc = subprocess.Popen(cmd, cwd=clone, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # pytest and whatever it started
        proc.communicate()
        return "timeout", [f"still running after {timeout:.0f} s"], time.perf_counter() - start
    seconds = time.perf_counter() - start
    LAST_OUTPUT["text"] = out
    if proc.returncode == 0:
        return "passed", [], seconds
    # A test id can hold spaces (parametrised ids): up to " - " or the line's end.
    failed = re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", out, re.M)
    if proc.returncode == 1 and failed:
        return "failed", failed, seconds
    return "error", failed or (out.strip().splitlines() or ["?"])[-1:], seconds


def passes_alone(clone: Path, env: dict[str, str], node: str, timeout: float,
                 tries: int = 1) -> bool:
    """Whether the test ``node`` passes when run alone (within ``tries`` runs)."""
    return any(run_tests(clone, env, [node], timeout)[0] == "passed" for _ in range(tries))


def load_hints(paths: list[Path]) -> dict[str, str]:
    """Mutation id -> the test that caught it in earlier ``--json`` outcomes
    (the later file wins)."""
    hints: dict[str, str] = {}
    for path in paths:
        for row in json.loads(Path(path).read_text())["mutations"]:
            if row.get("caught") and row.get("detail"):
                hints[row["id"]] = row["detail"]
    return hints


def try_hint(clone: Path, env: dict[str, str], node: str | None,
             timeout: float) -> tuple[str, list[str], float] | None:
    """Run the hinted test alone on the mutated clone: ('failed', [node], s) when it
    fails, else None (the whole suite decides). It passed in the unmutated full
    run, so failing now is the mutation's doing. A hint is only an order: it
    makes a catch quicker to find and never turns a survivor into a catch."""
    if not node:
        return None
    outcome, _, seconds = run_tests(clone, env, [node], timeout)
    return ("failed", [node], seconds) if outcome == "failed" else None


def write_outcome(path: Path, rows: list[dict], tests: list[str], planned: int) -> None:
    caught = sum(r["caught"] for r in rows)
    score = 100 * caught / len(rows) if rows else 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"caught": caught, "total": len(rows), "planned": planned,
                                "score_percent": round(score, 1), "tests": tests,
                                "mutations": rows}, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="only", action="append", default=[],
                        help="run only mutations whose id contains this (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    parser.add_argument("--check", action="store_true",
                        help="check every anchor against this checkout and stop")
    parser.add_argument("--tests", nargs="+", default=["tests"],
                        help="test paths to run (default: tests)")
    parser.add_argument("--committed", action="store_true",
                        help="measure HEAD, without this checkout's uncommitted changes")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per test run (default: 3x the unmutated run + 120)")
    parser.add_argument("--json", type=Path, default=None, help="also write the outcome here")
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    parser.add_argument("--hints", type=Path, nargs="+", default=[],
                        help="earlier --json outcomes: try the test that caught each "
                             "mutation there first, the whole suite only if it passes")
    args = parser.parse_args(argv)

    ids = [m.id for m in MUTATIONS]
    assert len(ids) == len(set(ids)), "mutation ids must be unique"
    chosen = [m for m in MUTATIONS if not args.only or any(w in m.id for w in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.id:36} {m.file:32} {m.why}")
        print(f"{len(chosen)} mutations")
        return 0
    hints = load_hints(args.hints)
    problems = check_anchors(ROOT, chosen)
    if problems or args.check:
        print("\n".join(problems) or f"all {len(chosen)} anchors found exactly once")
        return 1 if problems else 0

    workdir = Path(tempfile.mkdtemp(prefix="cnnlab-mutation-"))
    clone = workdir / "repo"
    try:
        make_clone(clone, args.committed)
        problems = check_anchors(clone, chosen)
        if problems:
            sys.exit("mutation: in the clone:\n" + "\n".join(problems))
        env = test_env(clone)
        verify_import(clone, env)
        print(f"clone: {clone} ({'HEAD' if args.committed else 'HEAD + uncommitted changes'})")
        print(f"tests: pytest {' '.join(args.tests)} -m 'not slow' -x -q "
              f"(python {sys.executable})", flush=True)
        outcome, failed, base = run_tests(clone, env, args.tests, timeout=7200,
                                          first_failure=False)
        baseline_output = LAST_OUTPUT["text"]
        unreliable = []
        if outcome == "failed":  # alone, on a quieter moment, do they pass?
            unreliable = [n for n in failed if passes_alone(clone, env, n, 1800, tries=3)]
            if len(unreliable) < len(failed):
                outcome = "still failing"
        if outcome not in ("passed", "failed"):
            errors = [line for line in baseline_output.splitlines()
                      if line.startswith("E ")][:20]
            sys.exit(f"mutation: the unmutated clone does not pass ({outcome}: "
                     f"{failed}); fix the suite first. First error lines:\n"
                     + "\n".join(errors))
        if unreliable:
            print(f"warning: {len(unreliable)} tests failed in the full run but pass "
                  f"alone (load?): {', '.join(unreliable)}", flush=True)
        timeout = args.timeout or 3 * base + 120
        print(f"unmutated: passed in {base:.0f} s; timeout per mutation {timeout:.0f} s\n",
              flush=True)
        rows = []
        for i, m in enumerate(chosen, 1):
            path = clone / m.file
            original = path.read_text()
            path.write_text(original.replace(m.old, m.new, 1))
            deselect: list[str] = []
            try:
                hinted = try_hint(clone, env, hints.get(m.id), timeout)
                for attempt in range(0 if hinted else 3):
                    outcome, failed, seconds = run_tests(
                        clone, env, args.tests + [f"--deselect={n}" for n in deselect],
                        timeout)
                    if outcome == "timeout" and attempt == 0:
                        continue  # once more: a paused or starved run also times out
                    if outcome != "failed":
                        break
                    # Confirm: the failing test fails alone with the bug and passes
                    # alone without it (a busy machine can push a timed check over
                    # its limit; such a failure proves nothing).
                    node = failed[0]
                    fails_mutated = not passes_alone(clone, env, node, timeout)
                    path.write_text(original)
                    passes_clean = passes_alone(clone, env, node, timeout, tries=2)
                    path.write_text(original.replace(m.old, m.new, 1))
                    if fails_mutated and passes_clean:
                        break
                    deselect.append(node)
                    outcome = "unsure"
            finally:
                path.write_text(original)
            if hinted:
                outcome, failed, seconds = hinted
            detail = failed[0] if failed else ""
            # A suite that runs past its time twice is not a catch: a slow test
            # is not a failing one (and a busy machine is slow too).
            caught = outcome not in ("passed", "unsure", "timeout")
            rows.append(asdict(m) | {"caught": caught, "outcome": outcome,
                                     "detail": detail, "seconds": round(seconds, 1)})
            verdict = ("caught  " if caught else "UNSURE  " if outcome == "unsure"
                       else "TIMEOUT " if outcome == "timeout" else "SURVIVED")
            print(f"[{i:2}/{len(chosen)}] {verdict} "
                  f"{m.id:36} {seconds:5.0f} s  {detail if caught else m.why}", flush=True)
            if args.json:  # after each mutation, so a stopped run keeps what it measured
                write_outcome(args.json, rows, args.tests, len(chosen))
        if _git("status", "--porcelain", "--untracked-files=no", cwd=clone).strip() \
                and args.committed:
            print("warning: the clone was left modified", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    caught = sum(r["caught"] for r in rows)
    score = 100 * caught / len(rows) if rows else 0.0
    print(f"\ncaught {caught} of {len(rows)} mutations: {score:.0f} %")
    unsure = [r["id"] for r in rows if r["outcome"] == "unsure"]
    if unsure:
        print("unsure (their failing tests fail unmutated too; counted as not caught): "
              + ", ".join(unsure))
    timeouts = [r["id"] for r in rows if r["outcome"] == "timeout"]
    if timeouts:
        print("timed out twice (counted as not caught): " + ", ".join(timeouts))
    survivors = [r["id"] for r in rows if r["outcome"] == "passed"]
    if survivors:
        print("survived: " + ", ".join(survivors))
    if args.json:
        write_outcome(args.json, rows, args.tests, len(chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
