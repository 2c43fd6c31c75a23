"""cnnlab's trainer against the classic DataLoader loop, in one process.

For each model: the report's recipe (AdamW 1e-3, batch 128, seed 42) run
(a) the classic way, torchvision MNIST + ToTensor + DataLoader, a
    ``loss.item()`` per step, as in most tutorials and in the report;
(b) with ``cnnlab.train.fit`` (device-resident split, sliced batches).
Same device, same model, same seed. Prints training time, images/s, test
accuracy and the speed ratio, and writes the table as JSON if asked.

    python benchmarks/speed.py                      # LeNet, 5 epochs, CPU
    python benchmarks/speed.py --models lenet resnet18 --max-steps 200
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.data import classic_loaders
from cnnlab.models import count_parameters, get_model, list_models
from cnnlab.results import atomic_write_text, provenance
from cnnlab.train import TrainConfig, fit, resolve_device, set_seed


def classic_fit(config: TrainConfig) -> dict:
    """The classic loop. Returns training seconds, images seen, test accuracy."""
    device = resolve_device(config.device)
    set_seed(config.seed)
    model = get_model(config.model, **config.model_kwargs()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    train, _, test = classic_loaders(config.batch_size, seed=config.seed)
    limit = config.max_steps or config.epochs * len(train)
    steps, images, running = 0, 0, 0.0
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.train()
    while steps < limit:
        for x, y in train:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()  # the usual running loss: a sync per step
            steps, images = steps + 1, images + len(y)
            if steps == limit:
                break
    seconds = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test:
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    return {"seconds": seconds, "images": images,
            "test_accuracy": correct / len(test.dataset)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet"], choices=list_models())
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()

    rows = []
    for name in args.models:
        config = TrainConfig(model=name, epochs=args.epochs, max_steps=args.max_steps,
                             device=args.device)
        classic = classic_fit(config)
        ours = fit(config, progress=False)
        rows.append({
            "model": name,
            "parameters": count_parameters(get_model(name)),
            "classic_seconds": classic["seconds"],
            "classic_images_per_s": classic["images"] / classic["seconds"],
            "classic_test_accuracy": classic["test_accuracy"],
            "cnnlab_seconds": ours.train_seconds,
            "cnnlab_images_per_s": ours.images_per_second,
            "cnnlab_test_accuracy": ours.test_accuracy,
            "speedup": classic["seconds"] / ours.train_seconds,
        })
    device = resolve_device(args.device)
    print(f"device: {provenance(device)['device_name']} ({device}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.python_version()}")
    print("| model | classic s | cnnlab s | speed-up | classic img/s | cnnlab img/s "
          "| classic test % | cnnlab test % |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['classic_seconds']:.1f} | {r['cnnlab_seconds']:.1f} "
              f"| {r['speedup']:.2f}x | {r['classic_images_per_s']:,.0f} "
              f"| {r['cnnlab_images_per_s']:,.0f} | {100 * r['classic_test_accuracy']:.2f} "
              f"| {100 * r['cnnlab_test_accuracy']:.2f} |")
    if args.json:
        record = {"provenance": provenance(device), "epochs": args.epochs,
                  "max_steps": args.max_steps, "rows": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
