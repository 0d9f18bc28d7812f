"""Checks of the built model against the components that need a particular architecture.

Some attacks only work on some models: the analytic inversion attack reads the input off the
gradient of a first fully connected layer with bias, label recovery needs an output layer with
bias. Whether a model qualifies is known only once it is built for the run's data (a user's
``torch_module`` factory sees the input shape), so the check runs right after the model is
built and before the first round: a run fails in one sentence instead of after hours of
training, and a matrix cell is recorded as ``incompatible``.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def check_attacks_fit_model(
    components: Any, model: nn.Module, input_shape: tuple[int, ...], n_classes: int
) -> None:
    """Let every privacy attack of ``components`` (:class:`fedguard.components.Components`)
    inspect ``model``; the first refusal propagates as its
    :class:`~fedguard.errors.IncompatibleError`."""
    for attack in getattr(components, "privacy_attacks", ()):
        check = getattr(attack, "check_model", None)
        if check is not None:
            check(model, tuple(int(s) for s in input_shape), int(n_classes))


__all__ = ["check_attacks_fit_model"]
