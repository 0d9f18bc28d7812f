"""The min-separation participation schedule: a client takes part at most once every b rounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedguard.config import parse_spec
from fedguard.core.sampling import min_separation_groups, sample_clients, sampling_description
from fedguard.errors import ConfigError


@settings(max_examples=40, deadline=None)
@given(
    n_clients=st.integers(1, 60),
    separation=st.integers(1, 12),
    rate=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 2**31),
)
def test_no_client_takes_part_twice_within_b_rounds(
    n_clients: int, separation: int, rate: float, seed: int
) -> None:
    separation = min(separation, n_clients)
    last: dict[int, int] = {}
    for t in range(3 * separation + 2):
        ids = sample_clients("min_separation", n_clients, 0, rate, seed, t, separation)
        assert list(ids) == sorted(set(ids))
        for i in ids:
            assert t - last.get(i, -separation) >= separation
            last[i] = t


def test_groups_partition_the_clients_and_every_eligible_client_takes_part() -> None:
    groups = min_separation_groups(23, 4, seed=7)
    sizes = np.bincount(groups, minlength=4)
    assert sizes.sum() == 23 and sizes.max() - sizes.min() <= 1
    for t in range(8):
        ids = sample_clients("min_separation", 23, 0, 0.0, 7, t, 4)
        assert ids == tuple(np.flatnonzero(groups == t % 4))
    # keyed by the seed only: the same groups every call, other groups for another seed
    assert np.array_equal(groups, min_separation_groups(23, 4, seed=7))
    assert not np.array_equal(groups, min_separation_groups(23, 4, seed=8))


def test_poisson_inside_the_group_has_the_rate() -> None:
    n, b, q = 400, 4, 0.25
    groups = min_separation_groups(n, b, seed=1)
    counts = []
    for t in range(40):
        ids = sample_clients("min_separation", n, 0, q, 1, t, b)
        assert set(groups[list(ids)]) <= {t % b}
        counts.append(len(ids))
    # 40 rounds of Binomial(100, 0.25): mean 25, sd of the mean ≈ 0.68
    assert abs(np.mean(counts) - 25.0) < 3.5


def test_description_tells_mechanisms_the_schedule() -> None:
    plain = sampling_description("min_separation", 40, 0, 0.0, 4)
    assert plain["scheme"] == "all" and plain["rate"] == 1.0 and plain["expected_cohort"] == 10.0
    assert plain["schedule"] == "min_separation" and plain["min_separation"] == 4
    amplified = sampling_description("min_separation", 40, 0, 0.5, 4)
    assert amplified["scheme"] == "poisson" and amplified["expected_cohort"] == 5.0


BASE = {"name": "s", "model": {"name": "mlp", "hidden": [4]}}


def test_config_requires_and_bounds_the_separation() -> None:
    spec = parse_spec({**BASE, "clients": {"sampling": "min_separation", "min_separation": 5}})
    assert spec.clients.min_separation == 5
    for clients, message in [
        ({"sampling": "min_separation"}, "min_separation is required"),
        ({"sampling": "min_separation", "min_separation": 30}, "must not exceed"),
        ({"sampling": "all", "min_separation": 2}, "only allowed with sampling"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_spec({**BASE, "clients": clients})


def test_the_new_field_leaves_earlier_spec_hashes_unchanged() -> None:
    spec = parse_spec(BASE)
    assert "min_separation" not in spec.canonical()["clients"]
    separated = parse_spec({**BASE, "clients": {"sampling": "min_separation", "min_separation": 2}})
    assert separated.canonical()["clients"]["min_separation"] == 2
    assert separated.spec_hash() != spec.spec_hash()
