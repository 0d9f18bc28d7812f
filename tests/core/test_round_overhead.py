"""The round's bookkeeping without per-client loops gives the same answers as the loops it
replaced: grouping clients by starting model, the mean from the transport's sum, huge-page
buffers (the trainers' equivalence tests cover the flat-table gather of a step's batch)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fedguard.components import build_components
from fedguard.config import parse_spec
from fedguard.core import round_stages
from fedguard.core.huge_pages import MIN_BYTES, empty_huge
from fedguard.core.mean import Mean, mean_from_sum
from fedguard.core.round_stages import _start_groups
from fedguard.core.simulation import Simulation
from fedguard.core.transport import PlainTransport
from fedguard.types import AggregationContext

SPEC: dict[str, Any] = {
    "name": "overhead",
    "rounds": 3,
    "data": {"dataset": "digits", "partition": "dirichlet"},
    "model": {"name": "mlp", "hidden": [8]},
    "clients": {"n_clients": 8},
    "training": {"local_epochs": 2, "batch_size": 8, "learning_rate": 0.1, "momentum": 0.5},
}


def _pairwise_groups(start: Tensor, rows: list[int]) -> list[tuple[list[int], Tensor]]:
    """The previous O(n²) grouping: each row against every group's model with torch.equal."""
    groups: list[tuple[list[int], Tensor]] = []
    for r in rows:
        for members, model in groups:
            if torch.equal(model, start[r]):
                members.append(r)
                break
        else:
            groups.append(([r], start[r]))
    return groups


def test_start_groups_match_pairwise_torch_equal() -> None:
    g = torch.Generator().manual_seed(0)
    models = torch.randn(4, 6, generator=g)
    models[2, 1] = 0.0
    pick = torch.randint(0, 4, (40,), generator=g)
    start = models[pick].clone()  # (40, 6): many clients share one of four models
    start[5, 1] = -0.0 if bool(pick[5] == 2) else start[5, 1]
    start[7] = models[2]
    start[7, 1] = -0.0  # equal to models[2] under torch.equal, other bytes
    start[11, 3] = float("nan")  # a NaN row equals nothing, not even a copy of itself
    start[12] = start[11]
    rows = [r for r in range(40) if r != 20]  # a subset, in order
    got = _start_groups(start, rows)
    expected = _pairwise_groups(start, rows)
    assert [m for m, _ in got] == [m for m, _ in expected]
    for (_, a), (_, b) in zip(got, expected, strict=True):  # the same first member's row, bitwise
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))
    assert len(got) == 4 + 2  # four models, two singleton NaN rows: the test plants both cases
    shared = torch.zeros(6)
    assert _start_groups(shared, rows) == [(rows, shared)]  # one global start: one group


def test_mean_from_the_transports_sum_is_the_means_result_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(1)
    updates = torch.randn(37, 101, generator=g)
    weights = torch.randint(1, 50, (37,), generator=g).float()
    sent = PlainTransport()(updates, weights, None)  # type: ignore[arg-type]
    ctx = AggregationContext(round=0, n_byzantine=0, generator=g, global_params=torch.zeros(101))
    direct = Mean()(updates, weights, ctx)
    fast = mean_from_sum(sent.update_sum, weights)
    assert torch.equal(fast.aggregate, direct.aggregate)
    assert fast.weights is not None and direct.weights is not None
    assert torch.equal(fast.weights, direct.weights)


def test_rounds_are_unchanged_when_the_mean_is_computed_by_the_aggregator(monkeypatch) -> None:
    run = parse_spec(SPEC)

    def play() -> tuple[Tensor, list[dict[str, Any]]]:
        sim = Simulation(run, build_components(run))
        state, records = sim.initial_state(), []
        for _ in range(run.rounds):
            state, out = sim.run_round(state)
            records.append({k: v for k, v in out.record.items() if "seconds" not in k})
        return state.params, records

    fast_params, fast_records = play()
    monkeypatch.setattr(round_stages, "_plain_mean", lambda sim: False)
    slow_params, slow_records = play()
    assert torch.equal(fast_params, slow_params)
    assert fast_records == slow_records
    assert "weights" in fast_records[-1]  # the record keeps the mean's per-client weights


def test_huge_page_buffer_is_an_ordinary_tensor() -> None:
    big = empty_huge((MIN_BYTES // 4 + 1024,), torch.float32, "cpu")
    big.fill_(1.5)
    assert big.is_contiguous() and float(big.sum()) == 1.5 * big.numel()
    small = empty_huge((3, 4), torch.float64, torch.device("cpu"))
    assert small.shape == (3, 4) and small.dtype == torch.float64


def test_record_scores_are_floats_whatever_the_rule_returns() -> None:
    """A rule may score clients with an integer or boolean tensor: the record keeps floats (as
    ``float(v)`` did before the loop-free map), so records never change type with the rule."""
    from fedguard.core.round_stages import _id_map

    ints = _id_map((3, 7), torch.tensor([1, 0]))
    assert ints == {"3": 1.0, "7": 0.0} and all(type(v) is float for v in ints.values())
    assert all(type(v) is float for v in _id_map((3, 7), torch.tensor([True, False])).values())
    assert _id_map((3, 7), torch.tensor([0.5, 0.25], dtype=torch.float32)) == {"3": 0.5, "7": 0.25}
