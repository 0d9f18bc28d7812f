"""Exposure, extraction decoding and sequence membership scores against closed forms and
behaviours that must hold (a memorized secret, an untrained model)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from textattack_util import lm_loss, seeded_gpt
from torch import Tensor, nn

from attacks.text.decoding import continue_prompts
from attacks.text.exposure import (
    exact_exposure,
    exposure_from_rank,
    rank_of,
    skew_normal_exposure,
)
from attacks.text.lm_scoring import sequence_nll, token_log_probs
from attacks.text.membership_scores import (
    loss_scores,
    reference_lira_scores,
    zlib_ratio_scores,
)
from fedguard.metrics.privacy_attack_metrics import auc

PREFIX = [20, 21, 22, 23, 24]
SECRET = [3, 1, 4, 1]


class Parrot(nn.Module):
    """Predicts the next token of one fixed sequence with probability ≈ 1 (a model that
    reproduces that sequence exactly), uniform elsewhere."""

    def __init__(self, sequence: list[int], vocab: int = 64) -> None:
        super().__init__()
        self.sequence, self.vocab = sequence, vocab

    def forward(self, tokens: Tensor) -> Tensor:
        logits = torch.zeros(*tokens.shape, self.vocab)
        for i in range(min(tokens.shape[1], len(self.sequence) - 1)):
            logits[:, i, self.sequence[i + 1]] = 30.0
        return logits


def candidate_space(digits: int) -> Tensor:
    space = torch.tensor(list(itertools.product(range(10), repeat=digits)))
    return torch.cat([torch.tensor(PREFIX).expand(len(space), len(PREFIX)), space], 1)


def test_exposure_of_a_model_that_reproduces_the_secret_is_log2_of_the_space() -> None:
    parrot = Parrot(PREFIX + SECRET)
    candidates = candidate_space(4)
    nll = sequence_nll(parrot, candidates, start=len(PREFIX))
    secret_nll = float(sequence_nll(parrot, torch.tensor([PREFIX + SECRET]), start=len(PREFIX)))
    assert rank_of(secret_nll, nll) == 1
    assert exact_exposure(secret_nll, nll) == pytest.approx(math.log2(10_000), abs=1e-12)
    # the estimate is capped at the same value
    sample = nll[torch.randperm(len(nll), generator=torch.Generator().manual_seed(0))[:500]]
    assert skew_normal_exposure(secret_nll, sample, 10_000) == pytest.approx(math.log2(10_000))


def test_rank_and_exposure_closed_forms() -> None:
    nll = torch.tensor([1.0, 2.0, 3.0, 3.0, 5.0, 6.0, 7.0, 8.0])
    assert rank_of(3.0, nll) == 3  # ties count for the secret
    assert exposure_from_rank(3, 8) == pytest.approx(3 - math.log2(3))
    assert exact_exposure(8.0, nll) == 0.0  # least likely of all: rank |R|
    with pytest.raises(ValueError):
        exposure_from_rank(0, 8)


def test_skew_normal_estimate_is_close_to_exact_enumeration_on_a_mid_size_space() -> None:
    """10⁴ candidates enumerated exactly vs the estimate from 2,000 sampled ones, on a model
    trained a few steps on the canary (exposures of ≈ 3–7 bits)."""
    m = seeded_gpt(0, vocab=64, dim=32, layers=2, heads=2, context=16)
    candidates = candidate_space(4)
    secret = torch.tensor([PREFIX + SECRET])
    background = torch.randint(10, 64, (32, 9), generator=torch.Generator().manual_seed(1))
    batch = torch.cat([background, secret.expand(2, -1)])
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    sample = torch.randint(0, len(candidates), (2000,), generator=torch.Generator().manual_seed(5))
    exposures = []
    for step in range(5):
        if step % 2 == 0:
            nll = sequence_nll(m, candidates, start=len(PREFIX))
            s = float(sequence_nll(m, secret, start=len(PREFIX)))
            exact = exact_exposure(s, nll)
            estimate = skew_normal_exposure(s, nll[sample], len(candidates))
            assert abs(estimate - exact) < 1.0, (step, exact, estimate)
            exposures.append(exact)
        opt.zero_grad()
        lm_loss(m, batch).backward()
        opt.step()
    assert exposures[-1] > exposures[0] + 2  # the check covers a range of exposures


def test_greedy_decoding_extracts_a_memorized_secret_and_sampling_is_keyed() -> None:
    parrot = Parrot(PREFIX + SECRET)
    out = continue_prompts(parrot, torch.tensor([PREFIX]), len(SECRET))
    assert out.tolist() == [SECRET]
    m = seeded_gpt(1, vocab=64, dim=32, layers=2, heads=2, context=16)
    prompts = torch.tensor([PREFIX, PREFIX])
    a = continue_prompts(m, prompts, 6, generator=torch.Generator().manual_seed(3), top_k=5)
    b = continue_prompts(m, prompts, 6, generator=torch.Generator().manual_seed(3), top_k=5)
    c = continue_prompts(m, prompts, 6, generator=torch.Generator().manual_seed(4), top_k=5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # top-k = 1 sampling is greedy decoding
    greedy = continue_prompts(m, prompts, 6)
    one = continue_prompts(m, prompts, 6, generator=torch.Generator().manual_seed(0), top_k=1)
    assert torch.equal(one, greedy)


def test_token_log_probs_match_a_hand_computed_log_softmax() -> None:
    m = seeded_gpt(2, vocab=64, dim=32, layers=2, heads=2, context=16)
    tokens = torch.randint(0, 64, (3, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = m(tokens).double()
    expected = torch.stack(
        [
            torch.stack([torch.log_softmax(logits[b, i], -1)[tokens[b, i + 1]] for i in range(6)])
            for b in range(3)
        ]
    )
    assert torch.allclose(token_log_probs(m, tokens, batch_size=2), expected, atol=1e-10)


def _members_and_non_members() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 64, (256, 12), generator=g)
    return pool[:128], pool[128:]


def _aucs(model: nn.Module, members: Tensor, others: Tensor) -> tuple[float, float]:
    tokens = torch.cat([members, others])
    is_member = torch.cat([torch.ones(len(members)), torch.zeros(len(others))]).bool()
    nll = sequence_nll(model, tokens)
    texts = [bytes(row) for row in tokens.tolist()]
    return (
        auc(loss_scores(nll, tokens.shape[1] - 1), is_member),
        auc(zlib_ratio_scores(nll, texts), is_member),
    )


def test_loss_and_zlib_mia_beat_chance_on_a_memorizing_model_and_not_on_an_untrained_one() -> None:
    members, others = _members_and_non_members()
    untrained = seeded_gpt(3, vocab=64, dim=32, layers=2, heads=2, context=16)
    # untrained: scores do not depend on membership; 128 vs 128 gives AUC sd ≈ 0.036
    for value in _aucs(untrained, members, others):
        assert abs(value - 0.5) < 0.12
    trained = seeded_gpt(3, vocab=64, dim=32, layers=2, heads=2, context=16)
    opt = torch.optim.Adam(trained.parameters(), lr=3e-3)
    for _ in range(80):
        opt.zero_grad()
        lm_loss(trained, members).backward()
        opt.step()
    for value in _aucs(trained, members, others):
        assert value > 0.9


def test_reference_lira_standardizes_by_the_references() -> None:
    target = torch.tensor([1.0, 0.0, -1.0])
    one = reference_lira_scores(target, torch.tensor([[0.0, 0.0, 0.0]]))
    assert torch.equal(one, target.double())  # one reference: the log-likelihood ratio
    refs = torch.tensor([[0.0, 1.0, -2.0], [2.0, -1.0, 0.0]])  # mean (1, 0, -1), deviations ±1
    scores = reference_lira_scores(target, refs)
    # global std over R·N deviations with N degrees of freedom removed: sqrt(6 / 3)
    assert torch.allclose(scores, torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64) / 1.0)
    scores = reference_lira_scores(torch.tensor([3.0, 0.0, -1.0]), refs)
    assert scores[0] == pytest.approx(2.0 / math.sqrt(2.0))
