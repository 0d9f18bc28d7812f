"""The run's schema is core and hashes through the defaults lookup the registry layer gives it
(issue 16: no core module imports ``fedguard.config`` or ``fedguard.components``)."""

from __future__ import annotations

import pytest

from fedguard import spec as core_spec
from fedguard.config import fill_defaults, parse_spec
from fedguard.spec import RunSpec

CONFIG = {"rounds": 2, "defense": {"aggregator": "krum"}, "clients": {"n_clients": 10}}


def test_a_spec_read_back_hashes_as_the_spec_that_wrote_it() -> None:
    spec = parse_spec(CONFIG)
    again = RunSpec.from_canonical(spec.canonical())
    assert again.canonical() == spec.canonical()
    assert again.spec_hash() == spec.spec_hash()


def test_defaults_come_from_the_registry_layer() -> None:
    """krum's parameters are filled in by the lookup, not by the core: the same data parsed
    without the lookup refuses to hash instead of hashing differently."""
    spec = parse_spec(CONFIG)
    assert set(spec.canonical()["defense"]["aggregator"]["params"]) >= {"n_byzantine"}
    bare = core_spec.parse_spec(CONFIG, None)
    with pytest.raises(RuntimeError, match="no component defaults"):
        bare.spec_hash()
    assert core_spec.parse_spec(CONFIG, fill_defaults).spec_hash() == spec.spec_hash()


def test_copies_keep_the_lookup() -> None:
    spec = parse_spec(CONFIG)
    moved = spec.with_overrides(**{"defense.aggregator": "median"})
    assert moved.canonical()["defense"]["aggregator"]["name"] == "median"
    assert (
        moved.spec_hash() == parse_spec({**CONFIG, "defense": {"aggregator": "median"}}).spec_hash()
    )
    copied = spec.model_copy(update={"training_seed": 3})
    assert copied.spec_hash() == parse_spec({**CONFIG, "training_seed": 3}).spec_hash()


def test_the_core_simulation_is_given_its_components() -> None:
    """The core never builds plugins: a Simulation without components is a TypeError, and the
    registry layer's builder gives one whose components are the spec's."""
    from fedguard.core.simulation import Simulation
    from fedguard.launch import build_simulation

    spec = parse_spec({**CONFIG, "rounds": 1})
    with pytest.raises(TypeError):
        Simulation(spec)  # type: ignore[call-arg]
    sim = build_simulation(spec)
    assert type(sim.components.aggregator).__name__ == "Krum"
