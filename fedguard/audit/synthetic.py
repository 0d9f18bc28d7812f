"""A one-round Gaussian release of canary updates: a known-ε target for checking the audit itself.

``release = Σ_{j included} clip_norm · c_j + background + N(0, (noise_multiplier · clip_norm)² I)``.
Adding or removing one canary changes the sum by ``clip_norm`` in L2, so the release is exactly the
Gaussian mechanism: μ-GDP with ``μ = 1/noise_multiplier`` and ε(δ) given by
:func:`fedguard.privacy.audit.gdp.gdp_epsilon`. ``claimed_noise_multiplier`` lets a test or a
benchmark model a broken mechanism (noise off while the ledger claims σ).

References
----------
Balle, B. and Wang, Y.-X. (2018). Improving the Gaussian mechanism for differential privacy.
*ICML 2018*.
Steinke, T., Nasr, M. and Jagielski, M. (2023). Privacy auditing with one (1) training run.
*NeurIPS 2023* (white-box gradient canaries).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fedguard.api import require


def gaussian_sum_release(
    directions: Tensor,
    included: Tensor,
    *,
    clip_norm: float,
    noise_multiplier: float,
    generator: torch.Generator,
    background: Tensor | None = None,
) -> Tensor:
    """``(d,)`` float64: the noisy sum of the included canaries' updates.

    Parameters
    ----------
    directions
        ``(m, d)`` unit canary directions.
    included
        ``(m,)`` bool, which canaries take part.
    clip_norm
        L2 norm of each canary update (the mechanism's sensitivity).
    noise_multiplier
        Noise standard deviation in units of ``clip_norm`` (0 = no noise).
    generator
        Source of the noise.
    background
        Optional ``(d,)`` vector added to the sum (the honest clients' contribution).

    References
    ----------
    Balle and Wang (2018).
    """
    require(directions.dim() == 2, "directions", "a (m, d) tensor")
    require(
        included.shape == (directions.shape[0],) and included.dtype == torch.bool,
        "included",
        "a boolean tensor with one entry per canary",
    )
    require(clip_norm > 0.0, "clip_norm", "> 0")
    require(noise_multiplier >= 0.0, "noise_multiplier", "≥ 0")
    d = directions.shape[1]
    release = clip_norm * directions.to(torch.float64)[included].sum(dim=0)  # (d,)
    if background is not None:
        require(background.shape == (d,), "background", "a (d,) tensor")
        release = release + background.to(torch.float64)
    if noise_multiplier > 0.0:
        noise = torch.randn(d, generator=generator, dtype=torch.float64)  # (d,)
        release = release + noise_multiplier * clip_norm * noise
    return release
