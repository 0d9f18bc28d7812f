"""Continuations of prompts by a causal language model: greedy or sampled (keyed generator).

Extraction attacks prompt the model with the text that precedes a secret and check whether
the continuation reproduces it verbatim.

References
----------
Carlini et al. "Extracting Training Data from Large Language Models." USENIX Security 2021
(prompted generation, greedy and sampled decoding with temperature / top-k).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from attacks.inversion._common import ParamLayout


def continue_prompts(
    module: nn.Module,
    prompts: Tensor,
    n_new: int,
    params: Tensor | None = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    context: int | None = None,
) -> Tensor:
    """``n_new`` tokens after each prompt ``(N, P)`` → ``(N, n_new)``.

    ``generator is None``: greedy (argmax); otherwise sample from ``softmax(logits /
    temperature)`` restricted to the ``top_k`` most likely tokens, drawing only from
    ``generator``. ``context``: the model's window (older tokens are dropped)."""
    if generator is not None and not temperature > 0:
        raise ValueError("temperature must be > 0 for sampled decoding.")
    named = None if params is None else ParamLayout.from_module(module).unflatten(params)
    seq = prompts.clone()
    with torch.no_grad():
        for _ in range(n_new):
            window = seq if context is None else seq[:, -context:]
            logits = module(window) if named is None else functional_call(module, named, (window,))
            last = logits[:, -1].double()  # (N, V)
            if generator is None:
                nxt = last.argmax(dim=-1)
            else:
                last = last / temperature
                if top_k is not None:
                    kth = torch.topk(last, top_k, dim=-1).values[:, -1:]
                    last = last.masked_fill(last < kth, float("-inf"))
                probs = torch.softmax(last, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            seq = torch.cat([seq, nxt[:, None]], dim=1)
    return seq[:, prompts.shape[1] :]


__all__ = ["continue_prompts"]
