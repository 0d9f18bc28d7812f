"""Client momentum and PSO-Fed partial sharing."""

from __future__ import annotations

import pytest
import torch

from fedguard.api import TransformContext
from fedguard.defenses.momentum import ClientMomentum
from fedguard.defenses.robust.partial_sharing import PartialSharing
from fedguard.errors import ConfigError
from fedguard.types import RoundContext


def _tctx(ids: tuple[int, ...], state: dict | None = None, round_index: int = 1, d: int = 4):
    rc = RoundContext(
        round=round_index, seed=3, global_params=torch.zeros(d), sampled_ids=ids, n_clients=10
    )
    return TransformContext(round=rc, client_ids=ids, state=state or {})


def test_exponential_momentum_closed_form_with_skipped_round() -> None:
    mom = ClientMomentum(beta=0.5)
    g1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    out1 = mom(g1, _tctx((3, 7)))
    torch.testing.assert_close(out1.values, 0.5 * g1)
    # Round 2: only client 7 takes part; client 3's momentum is kept unchanged.
    g2 = torch.tensor([[4.0, 4.0]])
    out2 = mom(g2, _tctx((7,), dict(out1.state)))
    torch.testing.assert_close(out2.values, torch.tensor([[2.0, 2.5]]))
    torch.testing.assert_close(out2.state["momenta"][3], torch.tensor([0.5, 0.0]))
    # Round 3: client 3 returns and resumes from its own momentum.
    g3 = torch.tensor([[2.0, 2.0]])
    out3 = mom(g3, _tctx((3,), dict(out2.state)))
    torch.testing.assert_close(out3.values, torch.tensor([[1.25, 1.0]]))


def test_heavy_ball_momentum() -> None:
    mom = ClientMomentum(beta=0.9, form="heavy_ball")
    g = torch.ones(1, 3)
    s1 = mom(g, _tctx((0,)))
    s2 = mom(g, _tctx((0,), dict(s1.state)))
    torch.testing.assert_close(s2.values, torch.full((1, 3), 1.9))
    with pytest.raises(ConfigError, match="form"):
        ClientMomentum(form="nesterov")
    with pytest.raises(ConfigError, match="beta"):
        ClientMomentum(beta=1.0)


def test_partial_sharing_fraction_and_independence() -> None:
    d = 50
    x = torch.randn(3, d) + 5.0  # no zero entries
    ps = PartialSharing(share_fraction=0.3)
    out = ps(x, _tctx((1, 2, 9), d=d)).values
    assert ((out != 0).sum(dim=1) == 15).all()
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept])
    # Client 9's mask does not depend on who else was sampled, and is reproducible.
    alone = ps(x[2:], _tctx((9,), d=d)).values
    torch.testing.assert_close(alone[0], out[2])
    # Different clients draw different masks.
    assert not torch.equal(kept[0], kept[1])
    scaled = PartialSharing(share_fraction=0.3, rescale=True)(x, _tctx((1, 2, 9), d=d)).values
    torch.testing.assert_close(scaled, out / 0.3)
    with pytest.raises(ConfigError, match="share_fraction"):
        PartialSharing(share_fraction=0.0)
