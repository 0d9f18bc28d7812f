from __future__ import annotations

import pytest

from fedguard import registry
from fedguard.components import instantiate
from fedguard.config import ComponentSpec
from fedguard.errors import ConfigError


def test_core_defaults_are_registered() -> None:
    assert "mean" in registry.names("aggregator")
    assert "plain" in registry.names("transport")
    assert {"digits", "breast_cancer", "synthetic", "csv", "npz"} <= set(registry.names("dataset"))
    assert {"iid", "dirichlet", "shards", "quantity_skew"} <= set(registry.names("partitioner"))
    assert {"logreg", "mlp", "cnn"} <= set(registry.names("model"))


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown model 'resnet'; valid names: (\w+, )*cnn, (\w+, )*logreg, (\w+, )*mlp",
    ):
        registry.get("model", "resnet")


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown parameter model\.depth for 'mlp'"):
        instantiate("model", ComponentSpec(name="mlp", params={"depth": 3}), "model")


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"data\.partition\.alpha"):
        instantiate(
            "partitioner",
            ComponentSpec(name="dirichlet", params={"alpha": "lots"}),
            "data.partition",
        )


def test_bound_checked_on_construction() -> None:
    with pytest.raises(ConfigError, match="partition.alpha must be a positive number"):
        instantiate(
            "partitioner", ComponentSpec(name="dirichlet", params={"alpha": 0}), "data.partition"
        )
