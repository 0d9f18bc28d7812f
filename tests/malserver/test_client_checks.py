"""Client checks of the received model: honest models (initial and trained) pass, every imprint
of the malicious-server attacks alarms; the jump check keeps per-client history."""

from __future__ import annotations

import pytest
import torch

from attacks.malicious_server.model_inconsistency import ModelInconsistency
from attacks.malicious_server.robbing_the_fed import RobbingTheFed
from attacks.malicious_server.trap_weights import TrapWeights
from defenses.client_checks.model_jump import STATE_KEY, ModelJump
from defenses.client_checks.parameter_statistics import ParameterStatistics, max_row_cosine
from fedguard.api import TransformContext
from fedguard.errors import ConfigError
from fedguard.models.flat import ParamLayout
from fedguard.types import RoundContext
from tests.malserver.helpers import broadcast_context, digits, fedsgd_updates, flat_params, mlp

IDS = (0, 1, 2)


def _ctx(ids: tuple[int, ...] = IDS, state: dict | None = None) -> TransformContext:
    rc = RoundContext(0, 0, torch.zeros(1), ids, 10)
    return TransformContext(rc, ids, state or {})


def _trained(hidden: int, rounds: int, lr: float = 0.5) -> list[torch.Tensor]:
    """The global models of ``rounds`` rounds of honest FedSGD on 200 digits per round."""
    x, y = digits()
    model = mlp(hidden, seed=hidden)
    params = flat_params(model)
    gen = torch.Generator().manual_seed(0)
    out = [params]
    for _ in range(rounds):
        pick = torch.randperm(1400, generator=gen)[:200]
        params = params + fedsgd_updates(model, params[None], [(x[pick], y[pick])], lr)[0]
        out.append(params)
    return out


def test_max_row_cosine_closed_forms() -> None:
    w = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [3.0, 3.0]], [[1.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(max_row_cosine(w), torch.tensor([0.0, 1.0, 0.0]).double())


@pytest.mark.parametrize("hidden", [32, 128])
def test_honest_initial_and_trained_models_pass(hidden: int) -> None:
    model = mlp(hidden)
    layout = ParamLayout.of(model)
    models = _trained(hidden, 60)
    out = ParameterStatistics().check(torch.stack(models), layout, _ctx(tuple(range(61))))
    assert not out.alarms.any(), float(out.scores.max())  # type: ignore[union-attr]
    state: dict = {}
    for params in models:  # the same client every round: the jump of one round
        res = ModelJump().check(params[None], layout, _ctx((7,), state))
        assert not res.alarms.any()
        state = dict(res.state)


@pytest.mark.parametrize("hidden", [32, 128])
def test_every_imprint_alarms_at_every_client(hidden: int) -> None:
    x, y = digits()
    model = mlp(hidden)
    layout = ParamLayout.of(model)
    trained = _trained(hidden, 5)[-1]
    ctx = broadcast_context(model, IDS, (x[1400:], y[1400:]), seed=1, round_=0)
    for attack in (
        RobbingTheFed(),
        TrapWeights(),
        ModelInconsistency(),
        ModelInconsistency(imprint="trap"),
    ):
        received = attack.broadcast(trained, ctx).received(IDS)
        out = ParameterStatistics().check(received, layout, _ctx())
        assert out.alarms.all(), (type(attack).__name__, out.scores)
        assert torch.isfinite(out.scores).all()  # type: ignore[arg-type]  # JSON-safe records
        jump = ModelJump().check(
            received, layout, _ctx(state={STATE_KEY: dict.fromkeys(IDS, trained)})
        )
        assert jump.alarms.all(), (type(attack).__name__, jump.scores)


def test_model_jump_keeps_per_client_history_and_never_adopts_a_refused_model() -> None:
    model = mlp(32)
    layout = ParamLayout.of(model)
    honest = flat_params(model)
    check = ModelJump()
    first = check.check(honest[None], layout, _ctx((4,)))
    assert not first.alarms.any() and set(first.state[STATE_KEY]) == {4}
    evil = honest.clone()
    evil[: 64 * 32] = 0.0  # the first layer replaced
    second = check.check(torch.stack([evil, evil]), layout, _ctx((4, 5), dict(first.state)))
    assert second.alarms.tolist() == [True, False]  # client 5 has no history yet
    assert torch.equal(second.state[STATE_KEY][4], honest)  # the refused model is not adopted


def test_bad_bounds_are_usage_errors() -> None:
    with pytest.raises(ConfigError, match="scale_range"):
        ParameterStatistics(scale_range=(2.0, 3.0))
    with pytest.raises(ConfigError, match="max_row_cosine"):
        ParameterStatistics(max_row_cosine=0.0)
    with pytest.raises(ConfigError, match="max_relative_jump"):
        ModelJump(max_relative_jump=-1.0)
