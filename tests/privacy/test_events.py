from __future__ import annotations

import json

import pytest

from fedguard.errors import ConfigError
from fedguard.privacy.events import (
    ClientEvent,
    Composed,
    DiscreteGaussian,
    Gaussian,
    PrivacyEvent,
    PrivacyUnit,
    RandomizedQuantization,
    Sampled,
    Skellam,
    compose,
    effective_gaussian_multiplier,
    event_from_dict,
    gaussian_for_sum,
    leaf_counts,
    sampled_gaussian,
)

EVENTS: list[PrivacyEvent] = [
    Gaussian(1.1, sensitivity=2.5),
    Sampled(0.01, Gaussian(1.0), scheme="poisson"),
    Sampled(0.01, Gaussian(1.0), scheme="without_replacement", population=1000),
    Composed((Sampled(0.1, Gaussian(2.0)), Gaussian(3.0)), count=7),
    RandomizedQuantization(clip=1.0, padding=0.5, levels=8, keep_probability=0.3, coordinates=10),
    DiscreteGaussian(local_noise_stddev=3.0, n_clients=10, l2_sensitivity=5.0, dimension=100),
    Skellam(variance=100.0, l2_sensitivity=4.0, dimension=50, l1_sensitivity=30.0),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_round_trip_through_json(event: PrivacyEvent) -> None:
    data = json.loads(json.dumps(event.to_dict()))
    assert data["type"] == event.type_tag
    back = event_from_dict(data)
    assert back == event and hash(back) == hash(event)
    assert type(event).from_dict(data) == event


def test_from_dict_of_a_subclass_checks_the_tag() -> None:
    with pytest.raises(ConfigError, match="gaussian"):
        Gaussian.from_dict(Sampled(0.5, Gaussian(1.0)).to_dict())


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Gaussian(0.0), "noise_multiplier"),
        (lambda: Gaussian(-1.0), "noise_multiplier"),
        (lambda: Gaussian(float("nan")), "noise_multiplier"),
        (lambda: Gaussian(1.0, sensitivity=0), "sensitivity"),
        (lambda: Sampled(0.0, Gaussian(1.0)), "rate"),
        (lambda: Sampled(1.5, Gaussian(1.0)), "rate"),
        (lambda: Sampled(0.5, Gaussian(1.0), scheme="shuffle"), "scheme"),
        (lambda: Sampled(0.013, Gaussian(1.0), scheme="fixed", population=100), "rate"),
        (lambda: Composed(()), "events"),
        (lambda: Composed((Gaussian(1.0),), count=0), "count"),
        (lambda: RandomizedQuantization(1.0, 0.5, 1, 0.5), "levels"),
        (lambda: RandomizedQuantization(1.0, 0.5, 4, 0.0), "keep_probability"),
        (lambda: RandomizedQuantization(1.0, 0.0, 4, 0.5), "padding"),
        (lambda: DiscreteGaussian(1.0, 0, 1.0, 10), "n_clients"),
        (lambda: Skellam(-1.0, 1.0, 10), "variance"),
        (lambda: PrivacyUnit(level="device"), "level"),
        (lambda: PrivacyUnit(relation="swap"), "relation"),
    ],
)
def test_bad_values_raise_one_sentence_naming_the_field(build, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    message = str(info.value)
    assert message.startswith(field) and message.endswith(".") and message.count(". ") == 0


def test_unknown_type_and_fields_are_refused() -> None:
    with pytest.raises(ConfigError, match="type"):
        event_from_dict({"type": "laplace", "scale": 1.0})
    with pytest.raises(ConfigError, match="unknown fields"):
        event_from_dict({"type": "gaussian", "noise_multiplier": 1.0, "sigma": 2})
    with pytest.raises(ConfigError, match="missing"):
        event_from_dict({"type": "gaussian"})


def test_fixed_is_an_alias_of_sampling_without_replacement() -> None:
    event = Sampled(0.1, Gaussian(1.0), scheme="fixed", population=50)
    assert event.scheme == "without_replacement" and event.relation == "replace_one"
    assert Sampled(0.1, Gaussian(1.0)).relation == "add_remove"


def test_noise_stddev_is_multiplier_times_sensitivity() -> None:
    assert Gaussian(1.5, sensitivity=2.0).noise_stddev == 3.0
    add_remove = gaussian_for_sum(clip_norm=2.0, noise_stddev=3.0, relation="add_remove")
    replace = gaussian_for_sum(clip_norm=2.0, noise_stddev=3.0, relation="replace_one")
    assert (add_remove.noise_multiplier, add_remove.sensitivity) == (1.5, 2.0)
    assert (replace.noise_multiplier, replace.sensitivity) == (0.75, 4.0)
    assert replace.noise_stddev == add_remove.noise_stddev == 3.0


def test_leaf_counts_multiply_through_nested_compositions() -> None:
    g, s = Gaussian(1.0), Sampled(0.1, Gaussian(2.0))
    tree = Composed((Composed((g, s), count=3), s), count=2)
    assert leaf_counts(tree) == {g: 6, s: 8}
    assert compose([g, g, s]) == Composed((Composed((g,), count=2), s))
    assert compose([g, g]) == Composed((g,), count=2) and compose([g]) == g
    assert leaf_counts(sampled_gaussian(0.01, 1.0, 100)) == {Sampled(0.01, Gaussian(1.0)): 100}
    assert sampled_gaussian(1.0, 2.0, 1) == Gaussian(2.0)


def test_effective_multiplier_of_gaussians_on_the_same_sample() -> None:
    # two queries with z = 1 and z = 1 are one query with z = 1/sqrt(2)
    assert effective_gaussian_multiplier(Composed((Gaussian(1.0), Gaussian(1.0)))) == pytest.approx(
        2**-0.5
    )
    assert effective_gaussian_multiplier(Composed((Gaussian(2.0),), count=4)) == pytest.approx(1.0)
    assert effective_gaussian_multiplier(EVENTS[4]) is None


def test_integer_l1_default() -> None:
    assert DiscreteGaussian(1.0, 2, 3.0, 100).l1_sensitivity == 9.0  # l2² < √d·l2
    assert Skellam(10.0, 30.0, 4).l1_sensitivity == 60.0  # √d·l2 < l2²


def test_client_event_dict_names_the_client_and_level() -> None:
    data = ClientEvent(4, Gaussian(1.0), level="record").to_dict()
    assert data == {
        "type": "gaussian",
        "noise_multiplier": 1.0,
        "sensitivity": 1.0,
        "client": 4,
        "level": "record",
    }
    assert "level" not in ClientEvent(4, Gaussian(1.0)).to_dict()
    with pytest.raises(ConfigError, match="level"):
        ClientEvent(1, Gaussian(1.0), level="device")
    with pytest.raises(ConfigError, match="client"):
        ClientEvent("a", Gaussian(1.0))  # type: ignore[arg-type]
