"""Log-likelihoods of token sequences under a causal language model (float64, batched).

A model is any ``nn.Module`` whose ``forward(tokens (B, L))`` returns next-token logits
``(B, L, V)``; a flat parameter vector is applied with :func:`torch.func.functional_call`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from attacks.inversion._common import ParamLayout


def token_log_probs(
    module: nn.Module, tokens: Tensor, params: Tensor | None = None, batch_size: int = 256
) -> Tensor:
    """``log p(t_i | t_<i)`` for ``i ≥ 1`` of every sequence: ``(N, L) → (N, L − 1)`` float64.

    ``params`` ``(d,)``: flat parameters to evaluate (``None``: the module's own)."""
    named = None if params is None else ParamLayout.from_module(module).unflatten(params)
    out = []
    with torch.no_grad():
        for start in range(0, tokens.shape[0], batch_size):
            chunk = tokens[start : start + batch_size]
            inputs = chunk[:, :-1]  # the last token is only predicted (fits the context)
            logits = module(inputs) if named is None else functional_call(module, named, (inputs,))
            logp = torch.log_softmax(logits.double(), dim=-1)
            out.append(torch.gather(logp, -1, chunk[:, 1:, None]).squeeze(-1))
    if not out:
        return torch.zeros(0, max(tokens.shape[1] - 1, 0), dtype=torch.float64)
    return torch.cat(out)


def sequence_nll(
    module: nn.Module, tokens: Tensor, params: Tensor | None = None, start: int = 1
) -> Tensor:
    """Negative log-likelihood in nats of tokens ``start…L−1`` of each sequence given what
    precedes them: ``(N, L) → (N,)`` float64 (``start = 1``: the whole sequence after its first
    token, Carlini et al.'s log-perplexity up to the constant first token)."""
    if start < 1:
        raise ValueError("start must be ≥ 1: the first token has no prediction.")
    return -token_log_probs(module, tokens, params)[:, start - 1 :].sum(dim=1)


__all__ = ["sequence_nll", "token_log_probs"]
