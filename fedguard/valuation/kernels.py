"""Pure kernels of semivalues on tables of utilities.

A semivalue values player ``i`` by ``φ_i = Σ_{S ⊆ N∖{i}} p(|S|) / C(n−1, |S|) · (v(S ∪ {i}) −
v(S))`` with a probability distribution ``p`` over coalition sizes ``0..n−1``:

- Shapley (Shapley 1953): ``p(s) = 1/n`` (uniform over sizes);
- Banzhaf (Banzhaf 1965; Wang & Jia 2023): ``p(s) = C(n−1, s) / 2^(n−1)`` (every coalition equally);
- Beta(α, β) Shapley (Kwon & Zou 2022): ``p`` is the beta-binomial(n−1, β, α) pmf, i.e. Kwon & Zou's
  weight ``w_{α,β}(j) = n·B(j+β−1, n−j+α)/B(α, β)`` on cardinality ``j = s + 1``;
  ``α = β = 1`` gives Shapley, ``α > β`` weights small coalitions more (their Beta(16, 1)).

References
----------
.. [1] L. S. Shapley. "A Value for n-Person Games." Contributions to the Theory of Games II, 1953.
.. [2] J. T. Wang, R. Jia. "Data Banzhaf: A Robust Data Valuation Framework." AISTATS 2023.
.. [3] Y. Kwon, J. Zou. "Beta Shapley: a Unified and Noise-reduced Data Valuation Framework for
   Machine Learning." AISTATS 2022.
"""

from __future__ import annotations

import math

import torch
from scipy import special
from torch import Tensor

from fedguard.valuation.game import all_masks, mask_bits, popcount


def shapley_size_distribution(n_players: int) -> Tensor:
    """``(n,)`` float64: ``p(s) = 1/n`` for ``s = 0..n−1``."""
    return torch.full((n_players,), 1.0 / n_players, dtype=torch.float64)


def banzhaf_size_distribution(n_players: int) -> Tensor:
    """``(n,)`` float64: ``p(s) = C(n−1, s) / 2^(n−1)``."""
    sizes = torch.arange(n_players, dtype=torch.float64)
    log_binom = (
        math.lgamma(n_players)
        - torch.lgamma(sizes + 1)
        - torch.lgamma(torch.tensor(float(n_players)) - sizes)
    )
    return torch.exp(log_binom - (n_players - 1) * math.log(2.0))


def beta_size_distribution(n_players: int, alpha: float, beta: float) -> Tensor:
    """``(n,)`` float64 beta-binomial(n−1, β, α) pmf over ``s = |S| = 0..n−1`` (Kwon & Zou 2022)."""
    sizes = torch.arange(n_players, dtype=torch.float64).numpy()
    m = n_players - 1
    log_pmf = (
        special.gammaln(m + 1)
        - special.gammaln(sizes + 1)
        - special.gammaln(m - sizes + 1)
        + special.betaln(sizes + beta, m - sizes + alpha)
        - special.betaln(beta, alpha)
    )
    return torch.from_numpy(log_pmf).exp().to(torch.float64)


def per_coalition_weights(size_distribution: Tensor) -> Tensor:
    """``p(s)/C(n−1, s)`` for ``s = 0..n−1`` (the weight of one coalition of size ``s``)."""
    n = size_distribution.shape[0]
    sizes = torch.arange(n, dtype=torch.float64)
    log_binom = math.lgamma(n) - torch.lgamma(sizes + 1) - torch.lgamma(n - sizes)
    return size_distribution * torch.exp(-log_binom)


def semivalue_from_table(values: Tensor, size_distribution: Tensor) -> Tensor:
    """Exact semivalue of a game given by all ``2**n`` utilities in mask order.

    Vectorized over coalitions: each ``v(S)`` enters ``φ_i`` with weight ``+c(|S|−1)`` for ``i ∈ S``
    and ``−c(|S|)`` for ``i ∉ S`` (``c`` = :func:`per_coalition_weights`), so
    ``φ = Bᵀ(c₊ ⊙ v) − (1 − B)ᵀ(c₋ ⊙ v)`` with ``B`` the ``(2**n, n)`` membership matrix.

    Parameters
    ----------
    values : Tensor
        ``(2**n,)`` utilities, ``values[mask] = v(S)``.
    size_distribution : Tensor
        ``(n,)`` probabilities of coalition sizes ``0..n−1``.

    Returns
    -------
    Tensor
        ``(n,)`` float64 values.
    """
    n = size_distribution.shape[0]
    masks = all_masks(n)  # (2**n,)
    bits = mask_bits(masks, n).to(torch.float64)  # (2**n, n)
    sizes = popcount(masks, n)  # (2**n,)
    c = per_coalition_weights(size_distribution)  # (n,)
    c_ext = torch.cat([c, torch.zeros(1, dtype=torch.float64)])  # c(n) = 0: no S ∌ i of size n
    v = values.to(torch.float64)  # (2**n,)
    plus = c_ext[(sizes - 1).clamp(min=0)] * (sizes > 0) * v  # (2**n,)  weight of v(S), i ∈ S
    minus = c_ext[sizes] * v  # (2**n,)  weight of v(S), i ∉ S
    return bits.T @ plus - (1.0 - bits).T @ minus


def exact_shapley(values: Tensor) -> Tensor:
    """Exact Shapley values from the ``(2**n,)`` utility table."""
    n = int(values.shape[0]).bit_length() - 1
    return semivalue_from_table(values, shapley_size_distribution(n))


def exact_banzhaf(values: Tensor) -> Tensor:
    """Exact Banzhaf values from the ``(2**n,)`` utility table."""
    n = int(values.shape[0]).bit_length() - 1
    return semivalue_from_table(values, banzhaf_size_distribution(n))
