"""DAGER: exact recovery of a batch's tokens from the gradients of a decoder's attention layers.

The kernel is model-agnostic: it is given the observed weight gradients of the input projection
(query/key/value) of the first one or two attention layers and a function that runs the model on
candidate token sequences and returns the inputs those projections receive.

1. **Tokens by position** (first layer). In a GPT-style decoder the first projection's input at
   position ``p`` depends only on the token there and on ``p`` (``LayerNorm(wte[v] + wpe[p])``),
   so every (token, position) pair of the vocabulary is a candidate; those whose input lies in the
   span of the first layer's gradient are the batch's tokens at that position.
2. **Sequences** (second layer). The second layer's input at position ``p`` depends, through causal
   attention, on the whole prefix ``t_0 … t_p``. Starting from the first-position tokens, each
   prefix is extended by every token found at the next position and kept only when its
   second-layer input lies in the span of the second layer's gradient.

The span test only separates when the gradient's rank is below what its shape allows: with ``n``
tokens in the batch (batch × sequence length) and input dimension ``d``, ``n ≥ d`` saturates the
rank and the attack **reports failure** rather than guessing.

Adapters change what is observed. With LoRA ``W + s·B·A`` the gradient of ``B`` is
``s·Σ δ_i (A x_i)ᵀ``: its rows span ``{A x_i}`` in the rank-``r`` space, so the test is run on the
projected candidates ``A x`` (``ObservedLayer.projection = A``; FFA-LoRA, and LoRA's first round
where ``B = 0`` makes ``A``'s gradient zero) and separates only while ``n < r``. The gradient of
``A`` is ``s·Bᵀ Σ δ_i x_iᵀ``: rows in ``span{x_i}`` but of rank ``≤ r``, so it holds the whole span
only while ``n < r`` (otherwise the rank saturates at ``r`` and the attack refuses).

References
----------
Petrov, Dimitrov, Baader, Müller, Vechev. "DAGER: Exact Gradient Inversion for Large Language
Models." NeurIPS 2024 (Algorithm 1: token filtering with the first layer's span, then sequence
search with the second layer's span for decoders).
Hu et al. "LoRA: Low-Rank Adaptation of Large Language Models." ICLR 2022.
Sun, Qin, Yu, Li, Ding. "Improving LoRA in Privacy-preserving Federated Learning." ICLR 2024
(FFA-LoRA: A frozen, only B trained).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attacks.text.gradient_span import GradientSpan, gradient_span, span_distance

#: tokens ``(N, P)`` → for each observed layer the ``(N, P, d)`` inputs of its projection
LayerInputs = Callable[[Tensor], Sequence[Tensor]]

RECOVERED = "recovered"  # sequences rebuilt
TOKENS_ONLY = "tokens_only"  # tokens per position, sequences not separable (one layer observed)
FAILED = "failed"


@dataclass(frozen=True)
class ObservedLayer:
    """One observed weight gradient ``(out, k)`` whose rows span the (projected) inputs.

    ``projection`` ``(k, d)`` maps an input ``x`` to the space the rows live in (LoRA's ``A``
    when ``B``'s gradient is observed); ``None``: the rows live in input space (``k = d``).
    """

    gradient: Tensor  # (out, k)
    projection: Tensor | None = None  # (k, d)

    def features(self, inputs: Tensor) -> Tensor:
        """``(..., d)`` inputs → ``(..., k)`` vectors comparable with the gradient's rows."""
        x = inputs.detach().double()
        if self.projection is None:
            return x
        return x @ self.projection.detach().double().T


@dataclass(frozen=True)
class DagerResult:
    """What the attack recovered, or why it could not.

    ``tokens_by_position[p]`` are the tokens found at position ``p`` (closest to the span
    first); ``sequences`` the rebuilt sequences (empty unless ``status == "recovered"``).
    """

    status: str
    reason: str
    rank: int
    dimension: int
    tokens_by_position: tuple[tuple[int, ...], ...] = ()
    sequences: tuple[tuple[int, ...], ...] = ()
    truncated: bool = False  # the prefix search hit ``max_prefixes``

    @property
    def token_set(self) -> frozenset[int]:
        return frozenset(t for position in self.tokens_by_position for t in position)


def _failed(reason: str, span: GradientSpan, dimension: int) -> DagerResult:
    return DagerResult(FAILED, reason, span.rank, dimension)


def input_dimension(features: Tensor, rank_tolerance: float) -> int:
    """Numerical rank of a set of candidate vectors ``(..., k)``: the dimension the batch's
    inputs can span (LayerNorm outputs of an untrained model lie in a hyperplane, so this can be
    below ``k``)."""
    flat = features.reshape(-1, features.shape[-1]).double()
    s = torch.linalg.svdvals(flat)
    return int((s > rank_tolerance * s[0]).sum()) if s.numel() and s[0] > 0 else 0


def unusable(span: GradientSpan, dimension: int, name: str) -> str | None:
    """Why a span cannot be used (``None`` when it can): it is empty, or its rank reached the
    dimension the candidates live in (``dimension``) or the most the gradient's shape allows."""
    if span.rank == 0:
        return f"the {name} gradient is zero: it carries no information about the inputs"
    if span.saturated or span.rank >= dimension:
        limit = min(dimension, span.singular_values.numel())
        return (
            f"the {name} gradient has rank {span.rank}, the most possible ({limit}): batch × "
            "tokens reaches the dimension of the inputs, so the span test cannot tell them apart"
        )
    return None


def tokens_by_position(distance: Tensor, threshold: float, span_rank: int) -> list[tuple[int, ...]]:
    """Tokens whose first-layer input at each position lies in the span (``distance`` ``(V, L)``
    below ``threshold``), closest first, at most ``span_rank`` per position (the batch cannot
    hold more distinct inputs than the rank); stops at the first position with none (the end of
    the longest sequence)."""
    found: list[tuple[int, ...]] = []
    for p in range(distance.shape[1]):
        hits = torch.nonzero(distance[:, p] < threshold).flatten()
        if hits.numel() == 0:
            break
        order = torch.argsort(distance[hits, p], stable=True)[:span_rank]
        found.append(tuple(int(v) for v in hits[order]))
    return found


def extend_prefixes(
    layer: ObservedLayer,
    span: GradientSpan,
    layer_inputs: LayerInputs,
    candidates: Sequence[tuple[int, ...]],
    threshold: float,
    max_prefixes: int,
) -> tuple[list[tuple[int, ...]], bool]:
    """Prefix search with the second layer: ``(sequences, truncated)``. A prefix none of whose
    extensions passes the test is a finished sequence (sequences may differ in length)."""
    prefixes: list[tuple[int, ...]] = [(v,) for v in candidates[0]]
    finished: list[tuple[int, ...]] = []
    truncated = False
    for p in range(len(candidates)):
        if p == 0:
            trial = prefixes
        else:
            trial = [(*pre, v) for pre in prefixes for v in candidates[p]]
        inputs = layer_inputs(torch.tensor(trial, dtype=torch.long))[1][:, p]  # (N, d)
        keep = (span_distance(span, layer.features(inputs)) < threshold).tolist()
        passed = [seq for seq, ok in zip(trial, keep, strict=True) if ok]
        if p > 0:
            extended = {seq[:-1] for seq in passed}
            finished.extend(pre for pre in prefixes if pre not in extended)
        if len(passed) > max_prefixes:
            passed, truncated = passed[:max_prefixes], True
        prefixes = passed
        if not prefixes:
            break
    finished.extend(prefixes)
    return finished, truncated


def dager_recover(
    layers: Sequence[ObservedLayer],
    layer_inputs: LayerInputs,
    vocab_size: int,
    max_length: int,
    threshold: float = 1e-2,
    rank_tolerance: float = 1e-7,
    max_prefixes: int = 256,
) -> DagerResult:
    """Run DAGER on one or two observed layers (first, second attention projection).

    ``threshold`` bounds the relative distance to the span of an accepted candidate (the
    paper's ``τ``); ``rank_tolerance`` sets the numerical rank (see
    :func:`~attacks.text.gradient_span.gradient_span`). Every (token, position) of the
    vocabulary up to ``max_length`` is a first-layer candidate. Returns ``status="failed"`` with
    the reason when the first layer's span is empty or its rank reaches the dimension of the
    candidate inputs; ``"tokens_only"`` when no usable second layer is given and some position
    holds several tokens.
    """
    grid = torch.arange(vocab_size)[:, None].expand(vocab_size, max_length).contiguous()
    grid_inputs = layer_inputs(grid)
    features = layers[0].features(grid_inputs[0])  # (V, L, k)
    first = gradient_span(layers[0].gradient, rank_tolerance)
    dimension = input_dimension(features, rank_tolerance)
    why = unusable(first, dimension, "first layer's")
    if why is not None:
        return _failed(why, first, dimension)
    second = None
    if len(layers) > 1:
        # the second layer's inputs differ for every distinct prefix: its rank counts the
        # batch's tokens even where the first layer's repeats (same token, same position)
        second = gradient_span(layers[1].gradient, rank_tolerance)
        second_dim = input_dimension(layers[1].features(grid_inputs[1]), rank_tolerance)
        why = unusable(second, second_dim, "second layer's")
        if why is not None and second.rank > 0:
            return _failed(why, second, second_dim)
        second = second if why is None else None
    found = tokens_by_position(span_distance(first, features), threshold, first.rank)
    if not found:
        return _failed("no candidate token lies in the first layer's span", first, dimension)
    if all(len(c) == 1 for c in found):  # one sequence: nothing to pair up
        seq = tuple(c[0] for c in found)
        return DagerResult(RECOVERED, "", first.rank, dimension, tuple(found), (seq,))
    if second is None:
        reason = "sequences not separated: no usable second layer observed"
        return DagerResult(TOKENS_ONLY, reason, first.rank, dimension, tuple(found))
    sequences, truncated = extend_prefixes(
        layers[1], second, layer_inputs, found, threshold, max_prefixes
    )
    return DagerResult(
        RECOVERED, "", first.rank, dimension, tuple(found), tuple(sequences), truncated
    )


__all__ = [
    "FAILED",
    "RECOVERED",
    "TOKENS_ONLY",
    "DagerResult",
    "LayerInputs",
    "ObservedLayer",
    "dager_recover",
    "extend_prefixes",
    "tokens_by_position",
]
