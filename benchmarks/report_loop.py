"""The baseline for end_to_end.py: the report's recipe, trained the classic way.

This is not the report's code; it does the same work as the report's
training script, in the style of most tutorials:

* torchvision's ``MNIST`` with ``ToTensor`` + ``Normalize``, split
  48,000 / 12,000 with ``random_split`` (seed 42), in ``DataLoader``s of
  128 images (every sample goes through PIL and ``ToTensor`` one by one);
* LeNet-5 as the report adapted it (sigmoid, max-pool, 16*4*4 inputs to
  the first linear layer), a model summary printed once (torchinfo);
* AdamW 1e-3, cross-entropy, 5 epochs, seed 42; a ``loss.item()`` per step
  for the loss curve; validation on all 12,000 images at each epoch end;
  one pass over the 10,000 test images at the end.

With ``--tensors`` it is the same loop written as fast as plain PyTorch
allows, a second and harder baseline: the files decoded once into one
normalised tensor, batches cut by slicing a shuffled index (no per-sample
work), validation and test in batches of 1,000 under ``no_grad``. It shows
how much of the gap is the data pipeline and how much is cnnlab's own.

It imports nothing from cnnlab, so its start-up is its own. It times its
phases and prints them as the last line, ``PHASES {json}``; ``time.time()``
at its first line lets the caller count the interpreter's start-up.

    python benchmarks/report_loop.py --root .cache/data [--epochs 1] [--max-steps 50] [--tensors]
"""
import time

STARTED = time.time()  # before any import: the caller subtracts its own clock
_tick = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, random_split  # noqa: E402
from torchinfo import summary  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402

phases = {"import": time.perf_counter() - _tick}


class LeNet(nn.Module):
    """LeNet-5 for 28x28 inputs: 44,426 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Sigmoid(), nn.MaxPool2d(2),   # 6 x 12 x 12
            nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.MaxPool2d(2),  # 16 x 4 x 4
        )
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.Sigmoid(),
            nn.Linear(84, 10),
        )

    def forward(self, x):
        return self.fc(self.conv(x))


def accuracy_and_loss(model, loader, device, criterion):
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss_sum += criterion(out, y).item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return correct / n, loss_sum / n


class TensorBatches:
    """Batches cut from tensors by slicing: what ``--tensors`` uses instead
    of a DataLoader. Shuffled by a fresh permutation each epoch if asked."""

    def __init__(self, images, labels, batch_size, shuffle=False):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle = batch_size, shuffle

    def __len__(self):
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield (self.images[start:start + self.batch_size],
                       self.labels[start:start + self.batch_size])
            else:
                index = order[start:start + self.batch_size]
                yield self.images[index], self.labels[index]


def tensor_loaders(root, batch_size):
    """The same split and normalisation as the DataLoader path, decoded once."""
    def decoded(train):
        raw = datasets.MNIST(root, train=train, download=False)
        images = (raw.data.float().div_(255).sub_(0.1307).div_(0.3081)).unsqueeze(1)
        return images, raw.targets
    images, labels = decoded(True)
    order = torch.randperm(60_000, generator=torch.Generator().manual_seed(42))
    train_i, val_i = order[:48_000], order[48_000:]
    test_images, test_labels = decoded(False)
    return (TensorBatches(images[train_i], labels[train_i], batch_size, shuffle=True),
            TensorBatches(images[val_i], labels[val_i], 1000),
            TensorBatches(test_images, test_labels, 1000), len(val_i))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder holding MNIST/raw/")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="a smoke test: stop after this many steps (then validate)")
    parser.add_argument("--tensors", action="store_true",
                        help="decode once into tensors and slice batches (no DataLoader)")
    args = parser.parse_args()

    tick = time.perf_counter()
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.manual_seed(42)
    torch.cuda.manual_seed_all(42)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.tensors:
        train_loader, val_loader, test_loader, val_count = tensor_loaders(
            args.root, args.batch_size)
    else:
        tf = transforms.Compose([transforms.ToTensor(),
                                 transforms.Normalize((0.1307,), (0.3081,))])
        full = datasets.MNIST(args.root, train=True, download=False, transform=tf)
        test_set = datasets.MNIST(args.root, train=False, download=False, transform=tf)
        train_set, val_set = random_split(full, [48_000, 12_000],
                                          generator=torch.Generator().manual_seed(42))
        train_loader = DataLoader(train_set, args.batch_size, shuffle=True)
        val_loader = DataLoader(val_set, args.batch_size)
        test_loader = DataLoader(test_set, args.batch_size)
        val_count = len(val_set)
    phases["data"] = time.perf_counter() - tick

    tick = time.perf_counter()
    model = LeNet().to(device)
    print(summary(model, input_size=(1, 1, 28, 28), verbose=0))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    phases["model"] = time.perf_counter() - tick

    losses, train_s, val_s, passes = [], 0.0, 0.0, 0
    for epoch in range(args.epochs):
        if len(losses) == args.max_steps:
            break
        tick = time.perf_counter()
        model.train()
        for x, y in train_loader:
            if len(losses) == args.max_steps:
                break
            x, y = x.to(device), y.to(device)
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        train_s += time.perf_counter() - tick
        tick = time.perf_counter()
        val_acc, val_loss = accuracy_and_loss(model, val_loader, device, criterion)
        val_s += time.perf_counter() - tick
        passes += 1
        epoch_losses = losses[-len(train_loader):]
        print(f"epoch {epoch + 1}: train loss {sum(epoch_losses) / len(epoch_losses):.4f}, "
              f"val loss {val_loss:.4f}, val acc {100 * val_acc:.2f}%")
    phases["train"], phases["val"] = train_s, val_s

    tick = time.perf_counter()
    test_acc, _ = accuracy_and_loss(model, test_loader, device, criterion)
    phases["test"] = time.perf_counter() - tick
    print(f"test accuracy {100 * test_acc:.2f}%")
    print("PHASES " + json.dumps({
        "started": STARTED, "finished": time.time(), "phases": phases,
        "test_accuracy": test_acc, "val_passes": passes,
        "val_images": passes * val_count, "device": str(device),
    }))


if __name__ == "__main__":
    main()
