"""Sample-level DP-SGD in local training (record-level privacy per client)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from fedguard.api import (
    ClientTransform,
    TransformContext,
    TransformOutput,
    require_positive,
)
from fedguard.errors import IncompatibleError
from fedguard.privacy.events import ClientEvent, Composed, Gaussian, PrivacyEvent, Sampled

from .kernels import bind_run_options, client_transform_names


def dp_sgd_round_event(
    count: int, batch_size: int, steps: int, noise_multiplier: float
) -> PrivacyEvent:
    """One client's round of DP-SGD: ``steps`` Poisson-sampled Gaussians at q = B/n (add/remove,
    record level; per-sample clipping gives the sum sensitivity C, noise z·C)."""
    rate = min(1.0, batch_size / max(count, 1))
    gaussian = Gaussian(noise_multiplier)
    inner: PrivacyEvent = gaussian if rate >= 1.0 else Sampled(rate, gaussian, scheme="poisson")
    return inner if steps == 1 else Composed((inner,), count=steps)


@dataclass(frozen=True)
class DPSGD(ClientTransform):
    """Replace each client's local training by DP-SGD: record-level (ε, δ)-DP per client.

    Each local step takes a Poisson batch (every sample with probability q = B/n, B the run's
    ``training.batch_size``), clips every per-sample gradient to ``clip_norm``, sums, adds
    N(0, (z·C)² I) and divides by the expected batch size qn (Opacus' convention); the steps run
    for all clients at once in :func:`fedguard.core.local_training.train_dp_sgd`: per-sample
    norms from activations and output gradients (ghost norms, Li et al. 2022; Bu et al. 2023)
    for Linear and Conv2d layers, per-sample gradients by ``vmap`` for other models. The noise
    of every client comes from its own keyed stream (seed, round, client, ``dp_sgd_noise``) —
    counter-based, drawn for the whole cohort at once — or from the OS CSPRNG with
    ``privacy.secure_rng``. Each client's ledger entry per round is
    a :class:`~fedguard.privacy.events.ClientEvent` (``level="record"``) of
    ``local_epochs · ⌈n/B⌉`` sampled Gaussian steps; a client's ε composes the rounds it took
    part in.

    Where it lives: a client transform with ``replaces_local_training``: the round loop calls
    :meth:`train` instead of the plain trainer (first in ``defense.client_transforms``), and files
    the events it returns.

    Parameters
    ----------
    noise_multiplier : float
        z > 0 (noise std on the per-step gradient sum over ``clip_norm``).
    clip_norm : float
        C > 0, the per-sample gradient L2 bound.

    References
    ----------
    Abadi et al. "Deep Learning with Differential Privacy." CCS 2016.
    Mironov, Talwar, Zhang. "Rényi Differential Privacy of the Sampled Gaussian Mechanism." 2019.
    Yousefpour et al. "Opacus: User-Friendly Differential Privacy Library in PyTorch." 2021.
    Li, Tramèr, Liang, Hashimoto. "Large Language Models Can Be Strong Differentially Private
    Learners." ICLR 2022.
    Bu, Wang, Zha, Karypis. "Differentially Private Optimization on Large Model at Small Cost."
    ICML 2023.
    """

    noise_multiplier: float = 1.0
    clip_norm: float = 1.0

    replaces_local_training: ClassVar[bool] = True

    def __post_init__(self) -> None:
        require_positive(self, "noise_multiplier", "clip_norm")

    def check_compatible(self, spec: Any, components: Any) -> None:
        bind_run_options(self, spec)
        names = client_transform_names(components)
        if names and names[0] != "dp_sgd":
            raise IncompatibleError(
                f"dp_sgd must be the first client transform (it replaces local training); got "
                f"{names}."
            )
        if spec.training.algorithm != "fedavg":
            raise IncompatibleError("dp_sgd needs training.algorithm 'fedavg' (local SGD steps).")
        if spec.clients.sampling == "fixed":
            raise IncompatibleError(
                "dp_sgd's record-level events are Poisson-sampled (add/remove); the run's ledger "
                "uses the replace-one relation of a fixed client cohort — use clients.sampling "
                "'poisson' or 'all'."
            )

    def __call__(self, updates: Tensor, ctx: TransformContext) -> TransformOutput:
        raise IncompatibleError(
            "dp_sgd replaces local training; the round loop calls its train() method."
        )

    def train(
        self, model: Any, global_params: Tensor, clients: Any, local: Any, ctx: TransformContext
    ) -> TransformOutput:
        from fedguard.core.local_training import DPSGDConfig, dp_sgd_steps, train_dp_sgd

        ids = [int(c) for c in ctx.client_ids]
        if not ids:
            return TransformOutput(values=global_params.new_zeros(0, global_params.numel()))
        r = ctx.round
        deltas = train_dp_sgd(
            model,
            r.global_params,
            clients,
            ids,
            local,
            DPSGDConfig(self.noise_multiplier, self.clip_norm),
            r.seed,
            r.round,
            secure_noise=bool(getattr(self, "_secure_rng", False)),
        )
        events = []
        for cid in ids:
            n = int(clients.counts[cid])
            ev = dp_sgd_round_event(
                n, local.batch_size, dp_sgd_steps(n, local), self.noise_multiplier
            )
            events.append(ClientEvent(cid, ev, level="record"))
        return TransformOutput(values=deltas, events=tuple(events))
