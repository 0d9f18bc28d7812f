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


def test_one_builder_for_configs_cli_and_compositions() -> None:
    """`registry.create` (contrib --method, compositions) validates types like configs do:
    on the old weaker path "2" stayed a string and a wrong type surfaced later or not at all."""
    import pytest

    from fedguard.errors import ConfigError
    from fedguard.registry import build_composite, create

    agg = create("aggregator", "trimmed_mean", n_byzantine="2")
    assert agg.n_byzantine == 2 and isinstance(agg.n_byzantine, int)
    with pytest.raises(ConfigError, match="n_byzantine"):
        create("aggregator", "trimmed_mean", n_byzantine="two")
    with pytest.raises(ConfigError, match="n_byzantine"):
        build_composite("nnm+krum", {"krum": {"n_byzantine": [1]}})
    composed = build_composite("nnm+trimmed_mean", {"trimmed_mean": {"n_byzantine": "1"}})
    assert composed.aggregator.n_byzantine == 1
