"""Any PyTorch model: ``model: {name: torch_module, factory: "package.module:make_model"}``.

The factory is imported and called only when a model is built, which only the commands that train
do (``run``, ``matrix``, ``contrib``, ``audit --empirical``); constructing this spec (``show``,
``audit``, ``report`` of a run folder) never imports user code. The built module is checked once, on a batch, for what the
vectorized trainer needs: logits of one row per sample and one column per class, at least one
parameter, no layer that mixes samples or keeps running statistics (BatchNorm), buffers that the
forward pass leaves unchanged (fedguard passes only parameters to ``torch.func.functional_call``;
buffers are read-only constants of the module), and a forward pass that ``torch.func.vmap`` can
batch over stacked parameter copies.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from fedguard.api import require
from fedguard.errors import ConfigError
from fedguard.models.base import ModelSpec

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class TorchModule(ModelSpec):
    """The user's ``nn.Module``, from ``factory(**kwargs)``.

    ``factory`` is ``"package.module:callable"``; if the callable accepts ``input_shape`` and/or
    ``n_classes`` they are passed from the data. ``path`` (optional) is a folder put at the front
    of ``sys.path`` for the import (e.g. ``"."`` for a module next to the config).
    """

    factory: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def __post_init__(self) -> None:
        require(
            bool(_FACTORY.match(self.factory)),
            "model.factory",
            'an import path "package.module:callable"',
        )

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        make = self._import()
        params = inspect.signature(make).parameters if callable(make) else {}
        extra = {
            k: v
            for k, v in (("input_shape", tuple(input_shape)), ("n_classes", n_classes))
            if k in params and k not in self.kwargs
        }
        try:
            module = make(**self.kwargs, **extra)
        except Exception as exc:  # the user's code: any failure is a config problem
            raise ConfigError(
                f"model.factory {self.factory!r} raised {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(module, nn.Module):
            raise ConfigError(
                f"model.factory {self.factory!r} must return a torch.nn.Module; it returned "
                f"{type(module).__name__}."
            )
        check_module(module, input_shape, n_classes, self.factory)
        return module

    def _import(self) -> Any:
        module_name, _, attr = self.factory.partition(":")
        if self.path:
            folder = str(Path(self.path).expanduser().resolve())
            if folder not in sys.path:
                sys.path.insert(0, folder)
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"model.factory {self.factory!r} cannot be imported ({type(exc).__name__}: "
                f"{exc}); check the name and model.path."
            ) from None
        except Exception as exc:
            raise ConfigError(
                f"model.factory {self.factory!r}: importing it raised {type(exc).__name__}: {exc}"
            ) from None
        if not callable(obj):
            raise ConfigError(f"model.factory {self.factory!r} is not callable.")
        return obj


#: layers that mix the samples of a batch or update running statistics in the forward pass
_NOT_VECTORIZABLE = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def check_module(
    module: nn.Module, input_shape: tuple[int, ...], n_classes: int, name: str
) -> None:
    """One sentence (ConfigError) for the first property the vectorized trainer cannot use."""
    for layer_name, layer in module.named_modules():
        if isinstance(layer, _NOT_VECTORIZABLE) and (
            isinstance(layer, nn.modules.batchnorm._BatchNorm) or layer.track_running_stats
        ):
            raise ConfigError(
                f"model {name!r} layer {layer_name!r} is {type(layer).__name__}, which mixes the "
                "samples of a batch and keeps running statistics, so it can be neither "
                "vectorized over clients nor trained with per-sample DP; use nn.GroupNorm instead."
            )
        if isinstance(layer, nn.RNNBase):
            raise ConfigError(
                f"model {name!r} layer {layer_name!r} is {type(layer).__name__}, whose fused "
                "kernel cannot be vectorized over clients; build it from nn.Linear cells "
                "(as fedguard's char_lstm does)."
            )
    params = dict(module.named_parameters())
    if not params:
        raise ConfigError(f"model {name!r} has no parameters to train.")
    wrong = [n for n, p in params.items() if p.dtype != torch.float32]
    if wrong:
        raise ConfigError(f"model {name!r} parameter {wrong[0]!r} is not float32.")
    before = {n: b.detach().clone() for n, b in module.named_buffers()}
    x = torch.zeros(2, *input_shape)
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as exc:
        raise ConfigError(
            f"model {name!r} fails on a batch of inputs shaped {tuple(x.shape)} "
            f"({type(exc).__name__}: {exc})."
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"model {name!r} returns {shape} for a batch of 2; it must return logits shaped "
            f"(batch, {n_classes}) — one column per class of this dataset."
        )
    for buffer_name, buffer in module.named_buffers():
        if not torch.equal(buffer, before[buffer_name]):
            raise ConfigError(
                f"model {name!r} buffer {buffer_name!r} changes in the forward pass; fedguard "
                "trains parameters only (buffers are constants), so remove that state."
            )
    names = list(params)
    stacked = {n: torch.stack([p.detach(), p.detach()]) for n, p in params.items()}

    def call(p: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        return functional_call(module, p, (inputs,))

    try:
        with torch.no_grad():
            vmap(call, in_dims=({n: 0 for n in names}, None))(stacked, x)
    except Exception as exc:
        raise ConfigError(
            f"model {name!r} cannot be vectorized over clients with torch.func.vmap "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})."
        ) from None
