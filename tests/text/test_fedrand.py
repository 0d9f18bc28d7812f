"""FedRand's payload policy: clients send only the part of each LoRA pair they took from the
server, keep the other part across rounds, and draw their choices from their own keyed streams."""

from __future__ import annotations

import pytest
import torch

from defenses.lora.fedrand import FedRand, pair_masks
from fedguard.api import TransformContext
from fedguard.errors import ConfigError, IncompatibleError
from fedguard.models.flat import FlatModel
from fedguard.models.gpt import GPT
from fedguard.text.tokenizer import VOCAB_SIZE
from fedguard.types import RoundContext


def _layout():
    spec = GPT(n_layer=2, n_head=2, d_model=8, context=4, adapter="lora", lora_rank=2)
    return FlatModel.of(spec.build((4,), VOCAB_SIZE)).layout


def _ctx(round_index: int, ids: tuple[int, ...], state, layout) -> TransformContext:
    d = layout.dim
    rc = RoundContext(round_index, 7, torch.zeros(d), ids, 6)
    return TransformContext(rc, ids, state, layout=layout)


def test_pair_masks_cover_each_adapter_once() -> None:
    layout = _layout()
    a, b = pair_masks(layout.names, layout.sizes)
    assert a.shape == (4, layout.dim)  # query and value of two blocks
    assert not (a & b).any() and bool((a.any(0) | b.any(0)).all())
    assert a.sum(1).tolist() == [2 * 8] * 4 and b.sum(1).tolist() == [8 * 2] * 4


def test_clients_never_send_a_part_they_keep_and_train_from_their_own_private_part() -> None:
    layout = _layout()
    policy = FedRand()
    a_mask, b_mask = pair_masks(layout.names, layout.sizes)
    state: dict = {}
    gen = torch.Generator().manual_seed(0)
    server = torch.randn(layout.dim, generator=gen)
    seen_private_private = False
    for t in range(6):
        ids = tuple(sorted(torch.randperm(6, generator=gen)[:3].tolist()))
        ctx = _ctx(t, ids, state, layout)
        received = server.expand(len(ids), -1).clone()
        starts = policy.receive(received, ctx)
        deltas = torch.randn(len(ids), layout.dim, generator=gen)
        payload = policy.send(deltas, starts, ctx)
        assert payload.mask is not None
        # each pair: exactly one of A and B is sent
        for k in range(a_mask.shape[0]):
            sent_a = payload.mask[:, a_mask[k]].all(1)
            sent_b = payload.mask[:, b_mask[k]].all(1)
            assert torch.equal(sent_a, ~sent_b)
            assert not (payload.mask[:, a_mask[k]].any(1) & ~sent_a).any()
        assert torch.equal(payload.values[~payload.mask], torch.zeros(int((~payload.mask).sum())))
        assert torch.equal(payload.values[payload.mask], deltas[payload.mask])
        # the private part of a returning client is its own trained value, not the server's
        for row, cid in enumerate(ids):
            own = state.get("local", {}).get(cid)
            if own is not None:
                private = ~payload.mask[row]
                assert torch.equal(starts[row][private], own[private])
                seen_private_private = True
            assert torch.equal(starts[row][payload.mask[row]], server[payload.mask[row]])
        state = dict(payload.state)
        server = server + (payload.values.sum(0) / payload.mask.sum(0).clamp_min(1))
    assert seen_private_private


def test_choices_are_a_clients_own_keyed_draws() -> None:
    layout = _layout()
    policy = FedRand()
    alone = policy.takes_a(_ctx(3, (4,), {}, layout), 4)
    together = policy.takes_a(_ctx(3, (1, 4, 5), {}, layout), 4)
    assert torch.equal(alone[0], together[1])
    rounds = torch.stack([policy.takes_a(_ctx(t, (4,), {}, layout), 4)[0] for t in range(40)])
    assert 0.3 < rounds.float().mean() < 0.7  # both parts are taken


def test_fedrand_needs_trainable_lora_pairs() -> None:
    class Parts:
        model = GPT(adapter="ffa_lora")

    with pytest.raises(IncompatibleError, match="adapter 'lora'"):
        FedRand().check_compatible(None, Parts())
    with pytest.raises(ConfigError, match="take_a_probability"):
        FedRand(take_a_probability=1.0)
