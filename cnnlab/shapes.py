"""Layer-by-layer output shapes, by running the model on a dummy batch.

Bugs 1 and 4 of the report are shape bugs: a flatten size computed for
32x32 inputs, and ResNet's last stages shrinking 28x28 digits to 1x1 maps.
``trace_shapes`` shows both by hooking every leaf layer; ``size_steps``
applies the output-size formula layer by layer and checks it against the
trace, and ``settings_table`` sets each layer's settings beside its output.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .models import eval_mode


@dataclass
class LayerShape:
    """One leaf layer's output during a forward pass."""

    name: str                     # qualified name, e.g. "layer4.1.conv2"
    kind: str                     # class name, e.g. "Conv2d"
    output_shape: tuple[int, ...]  # without the batch dimension
    parameters: int               # the layer's own parameters
    warning: str = ""             # set where the feature map has collapsed


def _warning(module: nn.Module, shape: tuple[int, ...]) -> str:
    if len(shape) != 3:
        return ""
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return ""  # a global pool makes 1x1 on purpose: nothing has collapsed
    h, w = shape[1:]
    if h <= 1 and w <= 1:
        return "1x1 map: no spatial context left"
    kernel = getattr(module, "kernel_size", None)
    if isinstance(kernel, tuple) and (h < kernel[0] or w < kernel[1]):
        return f"map {h}x{w} smaller than the {kernel[0]}x{kernel[1]} kernel"
    return ""


def forward_shapes(model: nn.Module, modules: Iterable[tuple[str, nn.Module]],
                   size: int = 28, in_channels: int | None = None,
                   ) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """Run one (1, C, size, size) batch of zeros through ``model`` and record
    each call of the named ``modules``: (name, module, output shape without
    the batch dimension), in call order.

    The model runs in eval mode without gradients and gets its mode back.
    C defaults to the model's ``input_shape``. Raises whatever the model
    raises when it cannot take that size (LeNet at 32, for example).
    """
    if in_channels is None:
        in_channels = getattr(model, "input_shape", (1,))[0]
    calls: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def record(name: str):
        def hook(module: nn.Module, _inp, out) -> None:  # None: the output is kept
            calls.append((name, module, tuple(out.shape[1:])))
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in modules]
    try:
        with torch.no_grad(), eval_mode(model):
            first = next(model.parameters(), None)  # a pool alone has none
            device = first.device if first is not None else torch.device("cpu")
            model(torch.zeros(1, in_channels, size, size, device=device))
    finally:
        for h in hooks:
            h.remove()
    return calls


def trace_shapes(model: nn.Module, size: int = 28,
                 in_channels: int | None = None) -> list[LayerShape]:
    """Run one (1, C, size, size) batch and record every leaf layer's output.

    C defaults to the model's ``input_shape``. Raises whatever the model
    raises when it cannot take that size (LeNet at 32, for example).
    """
    leaves = [(name, module) for name, module in model.named_modules()
              if next(module.children(), None) is None]
    return [LayerShape(name, type(module).__name__, shape,
                       sum(p.numel() for p in module.parameters()), _warning(module, shape))
            for name, module, shape in forward_shapes(model, leaves, size, in_channels)]


def format_shapes(records: list[LayerShape]) -> str:
    """A plain-text table of ``trace_shapes`` output."""
    rows = [("layer", "type", "output", "params", "")]
    rows += [(r.name, r.kind, "x".join(map(str, r.output_shape)),
              f"{r.parameters:,}", r.warning) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) if i != 3 else row[i].rjust(widths[i])
                 for i in range(4)]
        line = "  ".join(cells)
        lines.append(line + (f"  <- {row[4]}" if row[4] else ""))
    return "\n".join(lines)


@dataclass
class ReceptiveField:
    """How much of the input one output unit of a layer sees."""

    name: str    # the conv or pool layer
    kind: str    # "Conv2d" or "MaxPool2d"/"AvgPool2d"
    kernel: int
    stride: int
    size: int    # side of the input square one unit sees, in input pixels
    jump: int    # input pixels between two neighbouring units of this layer


def receptive_fields(model: nn.Module) -> list[ReceptiveField]:
    """The receptive field after every conv and pool layer, in forward order.

    A layer with kernel k and stride s grows the field by (k - 1) steps of
    the previous layer's jump j, and multiplies the jump by s:

        size_out = size_in + (k - 1) * j_in,   j_out = j_in * s

    starting from one pixel (size 1, jump 1). Padding shifts where a field
    sits, not its size. Layers are taken in ``named_modules`` order, which
    is the forward order for a chain such as LeNet.
    """
    size, jump, fields = 1, 1, []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            continue
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        s = m.stride if isinstance(m.stride, int) else m.stride[0]
        size, jump = size + (k - 1) * jump, jump * s
        fields.append(ReceptiveField(name, type(m).__name__, k, s, size, jump))
    return fields


def measured_receptive_field(model: nn.Module, layer: str, size: int = 28) -> int:
    """The receptive field of ``layer``, measured with autograd.

    Backpropagates from the unit at the centre of channel 0 of ``layer``'s
    output to a (1, C, size, size) input and returns the side of the square
    of input pixels whose gradient is not zero: the pixels that unit can see.
    An independent check of ``receptive_fields``.

    It runs on a copy of the model in which nothing can hide a pixel: every
    max-pool becomes an average pool of the same window (a max passes the
    gradient to one pixel of its window only), and the weights and the input
    are positive (so that no ReLU is off and no sum cancels out).
    """
    probe = copy.deepcopy(model).eval()
    for name, m in list(probe.named_modules()):
        if isinstance(m, nn.MaxPool2d):
            parent, _, child = name.rpartition(".")
            owner = probe.get_submodule(parent) if parent else probe
            setattr(owner, child, nn.AvgPool2d(m.kernel_size, m.stride, m.padding,
                                               ceil_mode=m.ceil_mode))
    with torch.no_grad():
        for p in probe.parameters():
            p.abs_().add_(0.01)
    module = probe.get_submodule(layer)
    captured = {}
    handle = module.register_forward_hook(lambda m, i, out: captured.update(out=out))
    try:
        channels = getattr(model, "input_shape", (1,))[0]
        x = (torch.rand(1, channels, size, size) + 0.1).requires_grad_()
        probe(x)
        out = captured["out"]
        out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    finally:
        handle.remove()
    seen = x.grad[0].abs().sum(0).nonzero()
    rows, cols = seen[:, 0], seen[:, 1]
    return int(max(rows.max() - rows.min(), cols.max() - cols.min())) + 1


def shape_markdown(rows: Iterable, keep=None) -> str:
    """A Markdown table of ``trace_shapes`` records (or ``explore.layer_table``
    rows, which add a mult-adds column), with each row's warning as a note.

    ``keep`` (a predicate on a row) picks the rows to show; a table with no
    row left says so instead of printing an empty table.
    """
    rows = [r for r in rows if keep is None or keep(r)]
    macs = bool(rows) and all(hasattr(r, "mult_adds") for r in rows)
    header = ["layer", "type", "output", "parameters"] + (["mult-adds"] if macs else [])
    lines = ["| " + " | ".join(header + ["note"]) + " |",
             "|---|---|---|" + "--:|" * (len(header) - 3) + "---|"]
    for r in rows:
        cells = [f"`{r.name}`", r.kind, "x".join(map(str, r.output_shape)),
                 f"{r.parameters:,}"] + ([f"{r.mult_adds:,}"] if macs else [])
        lines.append("| " + " | ".join(cells + [f"⚠ {r.warning}" if r.warning else ""])
                     + " |")
    return "\n".join(lines) if rows else "(no layer matches)"


# --- The layer table and the output-size formula (chapter 2) -----------------

def _side(v: int | tuple[int, ...]) -> int:
    """The height component of a size setting (an int or an (h, w) tuple)."""
    return v[0] if isinstance(v, tuple) else v


def _window(v: int | tuple[int, ...]) -> str:
    h, w = v if isinstance(v, tuple) else (v, v)
    return f"{h}x{w}"


def layer_settings(module: nn.Module) -> str:
    """The settings that decide a layer's output, as text for a layer table.

    A convolution gives its channels and kernel ('1 -> 6 channels, 5x5
    kernel'), a max or average pool its window and stride ('2x2 window,
    stride 2'), each followed by its padding and dilation where they are
    not 0 and 1 (and a convolution's stride where it is not 1); a linear
    layer gives its features ('256 -> 120'). Any other layer (an
    activation, a flatten) gives '': it does not change the size.
    """
    extra = []
    if isinstance(module, nn.Conv2d):
        text = (f"{module.in_channels} -> {module.out_channels} channels, "
                f"{_window(module.kernel_size)} kernel")
        if _side(module.stride) != 1:
            extra.append(f"stride {_side(module.stride)}")
    elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        text = f"{_window(module.kernel_size)} window, stride {_side(module.stride)}"
    elif isinstance(module, nn.Linear):
        return f"{module.in_features} -> {module.out_features}"
    else:
        return ""
    padding = getattr(module, "padding", 0)
    if isinstance(padding, str) or _side(padding) != 0:
        extra.append(f"padding {padding if isinstance(padding, str) else _side(padding)}")
    if _side(getattr(module, "dilation", 1)) != 1:
        extra.append(f"dilation {_side(module.dilation)}")
    return ", ".join([text] + extra)


def settings_table(model: nn.Module, size: int = 28,
                   in_channels: int | None = None) -> str:
    """A Markdown table of ``model``'s leaf layers for one (1, C, size, size)
    input: name, type, settings (``layer_settings``), output shape
    (C x H x W, from ``trace_shapes``) and parameters, with a total row that
    counts the model's own parameters.
    """
    modules = dict(model.named_modules())
    lines = ["| layer | type | settings | output (C x H x W) | parameters |",
             "|---|---|---|---|---:|"]
    for r in trace_shapes(model, size, in_channels):
        lines.append(f"| `{r.name}` | {r.kind} | {layer_settings(modules[r.name])} "
                     f"| {' x '.join(map(str, r.output_shape))} | {r.parameters:,} |")
    total = sum(p.numel() for p in model.parameters())
    lines.append(f"| | **total** | | | **{total:,}** |")
    return "\n".join(lines)


def output_side(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """The side of a conv or pool layer's output for an input of side ``n``:

        n_out = floor((n - kernel + 2 * padding) / stride) + 1
    """
    return (n - kernel + 2 * padding) // stride + 1


@dataclass
class SizeStep:
    """The output-size formula applied to one conv or pool layer."""

    name: str                  # e.g. "features.0"
    kind: str                  # "Conv2d", "MaxPool2d" or "AvgPool2d"
    kernel: int
    padding: int
    stride: int
    n_in: int                  # the side that reaches the layer
    n_out: int                 # output_side(n_in, kernel, stride, padding)
    traced: int | None = None  # the side the layer produced when the model ran

    @property
    def agrees(self) -> bool | None:
        """Whether the formula gives the traced side (None when not traced)."""
        return None if self.traced is None else self.traced == self.n_out


def size_steps(model: nn.Module, size: int = 28, trace: bool = True,
               in_channels: int | None = None) -> list[SizeStep]:
    """Apply ``output_side`` to every Conv2d, MaxPool2d and AvgPool2d of
    ``model`` in turn, starting from an input of side ``size``, with each
    layer's kernel, padding and stride read from the module (their height
    component).

    Each layer's input is the previous one's output, so the layers must form
    one chain in ``named_modules`` order, as in LeNet or AlexNet; the
    branches of a ResNet or an Inception module do not. With ``trace`` the
    model also runs on one (1, C, size, size) input and each step records
    the height its layer really produced; a layer with a setting that the
    formula leaves out (a dilation, ``ceil_mode=True``) then disagrees.
    Without ``trace`` nothing runs, so a size the model cannot take (LeNet
    at 32) still gives its steps.
    """
    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
    traced: dict[str, int] = {}
    if trace:
        for name, _, shape in forward_shapes(model, layers, size, in_channels):
            traced.setdefault(name, shape[-2])  # a layer called twice: its first call
    steps, n = [], size
    for name, m in layers:
        k, s = _side(m.kernel_size), _side(m.stride)
        p = 0 if isinstance(m.padding, str) else _side(m.padding)
        steps.append(SizeStep(name, type(m).__name__, k, p, s, n,
                              output_side(n, k, s, p), traced.get(name)))
        n = steps[-1].n_out
    return steps


def size_steps_markdown(steps: list[SizeStep]) -> str:
    """A Markdown table of ``size_steps``: each layer's formula with its
    numbers filled in, the traced side beside it, and a warning on a row
    where the two differ."""
    lines = ["| layer | type | `(n - k + 2*p) // s + 1` | traced | |",
             "|---|---|---|--:|---|"]
    for st in steps:
        formula = (f"`({st.n_in} - {st.kernel} + 2*{st.padding}) // {st.stride} + 1 "
                   f"= {st.n_out}`")
        traced = "" if st.traced is None else str(st.traced)
        note = {None: "", True: "✓",
                False: "⚠ differs: the layer has a setting the formula leaves out"}
        lines.append(f"| `{st.name}` | {st.kind} | {formula} | {traced} "
                     f"| {note[st.agrees]} |")
    return "\n".join(lines)
