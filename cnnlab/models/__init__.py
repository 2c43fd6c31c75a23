"""The model registry: ``get_model(name, **kw)`` and ``list_models()``.

Every builder takes ``in_channels=1`` and ``num_classes=10``, and
``dropout`` where the net has it, and returns logits.
"""
import inspect
from contextlib import contextmanager
from typing import Callable, Iterator

from torch import nn

from .alexnet import alexnet, alexnet_large
from .googlenet import googlenet
from .lenet import lenet
from .mobilenet import mobilenet_v1
from .resnet import resnet18

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet": lenet,
    "alexnet": alexnet,
    "alexnet_large": alexnet_large,
    "resnet18": resnet18,
    "mobilenet_v1": mobilenet_v1,
    "googlenet": googlenet,
}

# The report's dropout per model: none for LeNet, 0.2 for GoogLeNet (the
# report held that the paper's 0.4 lost too much on MNIST; chapter 6's
# dropout experiment tests that), 0.5 for the rest. Read from each builder's
# own default, so the value lives in one place.
def _builder_dropout(builder) -> float | None:
    parameter = inspect.signature(builder).parameters.get("dropout")
    return None if parameter is None else parameter.default


DEFAULT_DROPOUT: dict[str, float | None] = {
    name: _builder_dropout(builder) for name, builder in MODELS.items()}


def list_models() -> list[str]:
    """The registered model names, in the course's order."""
    return list(MODELS)


def check_model_name(name: str) -> str:
    """Return ``name`` if registered, else raise a ValueError listing the valid names.

    (Not a KeyError: its message would print wrapped in an extra pair of quotes.)
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: "
                         + ", ".join(MODELS))
    return name


def get_model(name: str, **kwargs) -> nn.Module:
    """Build the model ``name`` with keyword arguments for its builder.

    Sizes (``in_channels``, ``num_classes``, ``upsample``) must be positive
    integers: a zero or negative one would build a network that fails later,
    far from the mistake.
    """
    for size in ("in_channels", "num_classes", "upsample"):
        value = kwargs.get(size, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{size} must be a positive integer, got {value!r}")
    return MODELS[check_model_name(name)](**kwargs)


@contextmanager
def in_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put ``model`` in training (True) or eval (False) mode for a ``with`` block,
    then back in the mode it had, even if the block raises."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def eval_mode(model: nn.Module):
    """``with eval_mode(model):`` evaluates, and leaves the mode as it found it."""
    return in_mode(model, training=False)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
