"""DAGER on a tiny GPT-style decoder: exact recovery below the rank bound, failure at it, the
sum under secure aggregation, and the adapters' projected span test."""

from __future__ import annotations

import pytest
import torch
from textattack_util import fedsgd_update, random_tokens, seeded_gpt

from attacks.text.dager import FAILED, RECOVERED, TOKENS_ONLY, ObservedLayer, dager_recover
from attacks.text.gradient_span import gradient_span, span_distance
from attacks.text.layer_inputs import projection_inputs
from attacks.text.recovery_scores import sequence_scores

VOCAB, DIM, CONTEXT = 64, 32, 16
#: the span threshold τ for this PyTorch-initialised model: its attention mixes strongly, so a
#: wrong prefix lands ≥ 1e-2 from the second layer's span (the GPT in fedguard, GPT-2-initialised,
#: needs the plugin's default 1e-2: tests/textattacks/test_text_attacks_simulation.py)
TAU = 1e-3
LAYERS = ["blocks.0.qkv", "blocks.1.qkv"]


def model():  # type: ignore[no-untyped-def]
    return seeded_gpt(0, vocab=VOCAB, dim=DIM, layers=2, heads=2, context=CONTEXT)


def observed(update: dict[str, torch.Tensor]) -> list[ObservedLayer]:
    return [ObservedLayer(update[f"{name}.weight"]) for name in LAYERS]


def originals(chunks: torch.Tensor) -> list[tuple[int, ...]]:
    return [tuple(row) for row in chunks[:, :-1].tolist()]  # the tokens the model reads


def test_span_distance_zero_inside_and_large_outside() -> None:
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(5, 20, generator=g, dtype=torch.float64)
    deltas = torch.randn(5, 30, generator=g, dtype=torch.float64)
    span = gradient_span(deltas.T @ inputs)  # (30, 20) = Σ δ_i x_iᵀ
    assert span.rank == 5 and not span.saturated
    inside = torch.randn(3, 5, generator=g, dtype=torch.float64) @ inputs
    assert span_distance(span, inside).max() < 1e-10
    outside = torch.randn(100, 20, generator=g, dtype=torch.float64)
    # random vectors: distance ≈ sqrt(1 − 5/20) ≈ 0.87
    assert span_distance(span, outside).min() > 0.3


@pytest.mark.parametrize(
    ("batch", "length", "seed"), [(1, 15, 0), (2, 8, 1), (2, 12, 2), (3, 6, 3)]
)
def test_full_fine_tuning_fedsgd_below_bound_recovers_everything(
    batch: int, length: int, seed: int
) -> None:
    m = model()
    chunks = random_tokens(batch, length + 1, VOCAB, seed)
    assert batch * length < DIM
    result = dager_recover(
        observed(fedsgd_update(m, chunks)),
        projection_inputs(m, LAYERS),
        VOCAB,
        CONTEXT,
        threshold=TAU,
    )
    assert result.status == RECOVERED
    scores = sequence_scores(result.sequences, originals(chunks))
    assert scores["token_recovery"] == 1.0
    assert scores["sequence_recovery"] == 1.0
    assert scores["sequence_precision"] == 1.0
    assert scores["rouge1"] == scores["rouge2"] == 1.0


@pytest.mark.parametrize(("batch", "length"), [(2, 16), (4, 8), (3, 12)])
def test_at_or_above_bound_reports_failure(batch: int, length: int) -> None:
    m = seeded_gpt(0, vocab=VOCAB, dim=DIM, layers=2, heads=2, context=16)
    chunks = random_tokens(batch, length + 1, VOCAB, 7)
    assert batch * length >= DIM
    result = dager_recover(
        observed(fedsgd_update(m, chunks)),
        projection_inputs(m, LAYERS),
        VOCAB,
        CONTEXT,
        threshold=TAU,
    )
    assert result.status == FAILED
    assert "rank" in result.reason and not result.sequences and not result.tokens_by_position


def test_one_layer_gives_a_superset_of_tokens_by_position_only() -> None:
    """The first layer's inputs are LayerNorm(token + position): when (a, p), (a, q), (b, q) are
    in the batch, (b, p) is in the span too (the span is closed under these differences), so the
    first layer alone finds a superset at each position; the second layer removes it."""
    m = model()
    chunks = random_tokens(2, 9, VOCAB, 4)
    update = fedsgd_update(m, chunks)
    one = dager_recover(
        observed(update)[:1], projection_inputs(m, LAYERS), VOCAB, CONTEXT, threshold=TAU
    )
    assert one.status == TOKENS_ONLY and not one.sequences
    assert len(one.tokens_by_position) == 8  # the last token is only a label
    for p, found in enumerate(one.tokens_by_position):
        assert set(chunks[:, p].tolist()) <= set(found)
    assert sum(map(len, one.tokens_by_position)) > 16  # here the superset is strict
    two = dager_recover(
        observed(update), projection_inputs(m, LAYERS), VOCAB, CONTEXT, threshold=TAU
    )
    assert set(two.sequences) == set(originals(chunks))


def test_secure_aggregation_sum_recovers_the_union_of_clients() -> None:
    m = model()
    a, b = random_tokens(1, 9, VOCAB, 10), random_tokens(2, 5, VOCAB, 11)
    ua, ub = fedsgd_update(m, a), fedsgd_update(m, b)
    summed = {k: ua[k] + ub[k] for k in ua}
    result = dager_recover(
        observed(summed), projection_inputs(m, LAYERS), VOCAB, CONTEXT, threshold=TAU
    )
    assert result.status == RECOVERED
    union = set(originals(a)) | set(originals(b))
    assert set(result.sequences) == union  # the union is recovered; who sent what is not


def _lora_gradients(full: torch.Tensor, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """∂L/∂B = s·∂L/∂W·Aᵀ for an adapter W + s·B·A (chain rule), A random (FFA-LoRA's frozen A)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(rank, full.shape[1], generator=g) / full.shape[1] ** 0.5
    return full @ a.T * 2.0, a


@pytest.mark.parametrize(("rank", "expect"), [(24, RECOVERED), (8, FAILED)])
def test_ffa_lora_projected_span_test_depends_on_rank(rank: int, expect: str) -> None:
    m = model()
    chunks = random_tokens(1, 12, VOCAB, 5)  # 12 tokens read
    full = fedsgd_update(m, chunks)
    layers = []
    for i, name in enumerate(LAYERS):
        grad_b, a = _lora_gradients(full[f"{name}.weight"], rank, 20 + i)
        layers.append(ObservedLayer(grad_b, projection=a))
    result = dager_recover(layers, projection_inputs(m, LAYERS), VOCAB, CONTEXT, threshold=TAU)
    assert result.status == expect
    if expect == RECOVERED:
        assert result.sequences == (originals(chunks)[0],)
