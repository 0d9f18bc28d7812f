"""One-run audit of record-level DP-SGD (Opacus) with mislabelled canary examples.

``m`` canary examples are drawn from data the model never trains on otherwise (held-out digits)
and given a wrong label drawn uniformly from the other classes. Each canary is inserted into the
training set independently with probability ½; the model (an MLP on scikit-learn's digits) is then
trained once with DP-SGD through Opacus (:class:`opacus.PrivacyEngine`, Poisson sampling, flat
per-sample clipping, Gaussian noise) or through fedguard's own DP-SGD trainer. Every canary, inserted or not, is scored under the final
model — the negative cross-entropy of its canary label (``score="loss"``) or the logit margin of
that label over the best other class (``score="margin"``) — and the one-run audit of Steinke,
Nasr and Jagielski (2023) turns the scores and the inclusion truth into an ε lower bound.

:func:`gradient_canary_audit` audits the same Opacus training white-box with Dirac gradient
canaries (Nasr et al. 2023): per-sample gradients ``C·e_j`` on coordinates no real sample moves.

Reported next to the bound: the accountant's ε upper bound for the same training, from Opacus'
RDP accountant and from fedguard's ``get_accountant("rdp")`` on a ``sampled_gaussian`` event
(both for the *claimed* noise multiplier), their ratio and the ceiling (the largest ε the design
can certify). A lower bound above the upper bound means the mechanism or its accounting is wrong
(with the stated confidence).

Conventions
-----------
* ``noise_multiplier`` is the claim that is accounted; ``actual_noise_multiplier`` (default: the
  same) is the noise the optimizer really adds. Setting it near 0 simulates a broken mechanism
  whose ledger still claims ``noise_multiplier`` — the case an audit must catch.
* ``trainer="opacus"`` (default): Poisson sampling as Opacus does it, rate ``q = 1 / ⌈N / B⌉``
  and ``⌈N / B⌉`` steps per epoch for the realised training-set size ``N`` (non-canary samples
  plus inserted canaries) and expected batch size ``B``. ``trainer="fedguard"``: the same model and
  data through fedguard's own vectorized :func:`~fedguard.core.local_training.train_dp_sgd` (one
  client), rate ``q = B / N``, same step count. Both accountants use the realised ``(q, steps)``,
  the add/remove relation and the audit's ``delta``.
* The guess grid and its union bound are those of :func:`one_run_audit`; ``ceiling`` is the bound
  the same grid reaches when every guess is right. The bound is a lower bound; a loose one (0 for
  a well-noised run with a few hundred canaries) is expected, not a failure.
* Defaults (500 samples, 200 canaries, 256 hidden units, 30 epochs, B = 32, C = 10, lr 0.5) are
  chosen so that an unnoised run memorises the canaries (ε_LB ≈ 1.5–2.4 at 95%) in about a second
  on one core; the per-sample clip norm is large so that clipping alone does not hide them. With
  200 canaries the ceiling is ≈ 3.5 (95%, δ = 1e-5, default grid), below the ε ≈ 9.4 that z = 1
  gives for these 570 steps: this design can expose a grossly broken mechanism relative to a
  correct one, but cannot refute the claim itself; more canaries raise the ceiling slowly.
* Randomness only from ``seed``: the data split, the canary labels and the inclusion coins come
  from ``fedguard.rng.numpy_generator(seed, 0, 0, "sample_canaries")``; model initialisation,
  Poisson batches and noise from their own ``torch`` streams. Same seed → same scores bit-for-bit
  on CPU.

References
----------
Steinke, T., Nasr, M. and Jagielski, M. (2023). Privacy auditing with one (1) training run.
*NeurIPS 2023*. arXiv:2305.08846.
Jagielski, M., Ullman, J. and Oprea, A. (2020). Auditing differentially private machine learning:
how private is private SGD? *NeurIPS 2020* (mislabelled/poisoned canary examples).
Abadi, M. et al. (2016). Deep learning with differential privacy. *CCS 2016*.
Nasr, M. et al. (2023). Tight auditing of differentially private machine learning. *USENIX
Security 2023* (Dirac gradient canaries).
Yousefpour, A. et al. (2021). Opacus: user-friendly differential privacy library in PyTorch.
arXiv:2109.12298.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from fedguard.api import require
from fedguard.privacy.audit.one_run import one_run_audit
from fedguard.privacy.audit.result import AuditResult
from fedguard.rng import numpy_generator, torch_generator

Score = Literal["loss", "margin"]
Trainer = Literal["opacus", "fedguard"]
N_CLASSES = 10
N_FEATURES = 64


@dataclass(frozen=True)
class SampleCanaryConfig:
    """Sizes and DP-SGD settings of a sample-level canary audit (defaults run in seconds)."""

    n_canaries: int = 200
    n_train: int = 500
    hidden_units: int = 256
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 0.5
    clip_norm: float = 10.0
    noise_multiplier: float = 1.0
    actual_noise_multiplier: float | None = None
    delta: float = 1e-5
    confidence: float = 0.95
    score: Score = "loss"
    trainer: Trainer = "opacus"

    def __post_init__(self) -> None:
        require(self.n_canaries >= 2, "n_canaries", "an integer ≥ 2")
        require(self.n_train >= 1, "n_train", "a positive integer")
        require(
            self.n_train + self.n_canaries <= 1797,
            "n_train + n_canaries",
            "at most 1797 (the size of the digits data set)",
        )
        require(self.hidden_units >= 1, "hidden_units", "a positive integer")
        require(self.epochs >= 1, "epochs", "a positive integer")
        require(self.batch_size >= 1, "batch_size", "a positive integer")
        require(self.learning_rate > 0, "learning_rate", "> 0")
        require(self.clip_norm > 0, "clip_norm", "> 0")
        require(self.noise_multiplier > 0, "noise_multiplier", "> 0 (the accounted claim)")
        require(
            self.actual_noise_multiplier is None or self.actual_noise_multiplier >= 0,
            "actual_noise_multiplier",
            "None (same as noise_multiplier) or ≥ 0",
        )
        require(
            0 < self.delta <= 1.0 / (2.0 * self.n_canaries),
            "delta",
            "in (0, 1/(2·n_canaries)] for the one-run bound",
        )
        require(0 < self.confidence < 1, "confidence", "in (0, 1)")
        require(self.score in ("loss", "margin"), "score", "'loss' or 'margin'")
        require(self.trainer in ("opacus", "fedguard"), "trainer", "'opacus' or 'fedguard'")

    @property
    def trained_noise_multiplier(self) -> float:
        """The noise multiplier the optimizer really uses."""
        if self.actual_noise_multiplier is None:
            return self.noise_multiplier
        return self.actual_noise_multiplier


@dataclass(frozen=True)
class SampleCanaryAudit:
    """Outcome: the one-run lower bound, the accountants' upper bounds and the raw material.

    ``ratio`` is ``lower / upper`` (Opacus' RDP ε); ``included`` and ``scores`` are per canary.
    """

    result: AuditResult
    epsilon_upper_opacus: float
    epsilon_upper_fedguard: float
    ratio: float
    ceiling: float
    sampling_rate: float
    steps: int
    scores: NDArray[np.float64] = field(repr=False)
    included: NDArray[np.bool_] = field(repr=False)
    test_accuracy: float = 0.0

    @property
    def epsilon_lower(self) -> float:
        return self.result.epsilon

    def as_dict(self) -> dict[str, Any]:
        return {
            "epsilon_lower": self.epsilon_lower,
            "epsilon_upper_opacus": self.epsilon_upper_opacus,
            "epsilon_upper_fedguard": self.epsilon_upper_fedguard,
            "ratio": self.ratio,
            "ceiling": self.ceiling,
            "sampling_rate": self.sampling_rate,
            "steps": self.steps,
            "test_accuracy": self.test_accuracy,
            "result": self.result.as_dict(),
        }


@dataclass(frozen=True)
class CanaryData:
    """Training samples, canaries (inputs, wrong labels, inclusion) and a test split."""

    train_x: Tensor  # (n_train, 64)
    train_y: Tensor  # (n_train,)
    canary_x: Tensor  # (m, 64)
    canary_y: Tensor  # (m,) canary labels, never the true class
    canary_true_y: Tensor  # (m,) the canaries' true classes
    included: NDArray[np.bool_]  # (m,)
    test_x: Tensor  # (n_test, 64)
    test_y: Tensor  # (n_test,)


def mislabelled_canaries(config: SampleCanaryConfig, seed: int) -> CanaryData:
    """Split digits into training samples, ``m`` mislabelled canaries and a test split.

    The canary label is ``(y + U) mod 10`` with ``U`` uniform on ``{1, …, 9}`` (never the true
    class); inclusion coins are fair. All from the stream ``(seed, 0, 0, "sample_canaries")``.

    References
    ----------
    Jagielski, Ullman and Oprea (2020); Steinke, Nasr and Jagielski (2023), section 7.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # (1797, 64)
    y = digits.target.astype(np.int64)  # (1797,)
    gen = numpy_generator(seed, 0, 0, "sample_canaries")
    order = gen.permutation(x.shape[0])
    n, m = config.n_train, config.n_canaries
    train, canary, test = order[:n], order[n : n + m], order[n + m :]
    shift = gen.integers(1, N_CLASSES, size=m)  # (m,) in 1..9
    included = gen.random(m) < 0.5  # (m,)
    return CanaryData(
        train_x=torch.from_numpy(x[train]),
        train_y=torch.from_numpy(y[train]),
        canary_x=torch.from_numpy(x[canary]),
        canary_y=torch.from_numpy((y[canary] + shift) % N_CLASSES),
        canary_true_y=torch.from_numpy(y[canary]),
        included=included,
        test_x=torch.from_numpy(x[test]),
        test_y=torch.from_numpy(y[test]),
    )


def _mlp(hidden_units: int, generator: torch.Generator) -> nn.Sequential:
    """64 → hidden → 10 ReLU MLP, PyTorch's default uniform(±1/√fan_in) init from ``generator``."""
    model = nn.Sequential(
        nn.Linear(N_FEATURES, hidden_units, device="meta"),
        nn.ReLU(),
        nn.Linear(hidden_units, N_CLASSES, device="meta"),
    ).to_empty(device="cpu")
    with torch.no_grad():
        for layer in (model[0], model[2]):
            assert isinstance(layer, nn.Linear)
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
    return model


def canary_scores(logits: Tensor, labels: Tensor, score: Score = "loss") -> NDArray[np.float64]:
    """Per-canary membership score, higher = "more likely trained on".

    ``loss``: ``−CE(logits, label)``; ``margin``: ``z_label − max_{k≠label} z_k``.
    ``logits`` (m, classes), ``labels`` (m,).
    """
    if score == "loss":
        values = -F.cross_entropy(logits, labels, reduction="none")  # (m,)
    else:
        own = logits.gather(1, labels[:, None]).squeeze(1)  # (m,)
        others = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)  # (m,)
        values = own - others
    return values.detach().to(torch.float64).numpy()


def epsilon_upper_bounds(
    noise_multiplier: float, sampling_rate: float, steps: int, delta: float
) -> tuple[float, float]:
    """``(Opacus RDP ε, fedguard RDP ε)`` of ``steps`` Poisson-sampled Gaussian steps."""
    from opacus.accountants import RDPAccountant

    from fedguard.privacy.accountants import get_accountant
    from fedguard.privacy.events import sampled_gaussian

    opacus_accountant = RDPAccountant()
    opacus_accountant.history = [(noise_multiplier, sampling_rate, steps)]
    eps_opacus = float(opacus_accountant.get_epsilon(delta=delta))
    event = sampled_gaussian(sampling_rate, noise_multiplier, steps=steps)
    eps_fedguard = float(get_accountant("rdp").epsilon(event, delta))
    return eps_opacus, eps_fedguard


def _opacus_private(
    model: nn.Module, train_x: Tensor, train_y: Tensor, cfg: SampleCanaryConfig, seed: int
) -> tuple[Any, Any, Any]:
    """Opacus DP-SGD (Poisson sampling, flat clipping) with the audit's seeded streams."""
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
    loader = DataLoader(
        TensorDataset(train_x, train_y),
        batch_size=cfg.batch_size,
        generator=torch_generator(seed, 0, 0, "sample_canaries_batches"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about secure_mode=False
        engine = PrivacyEngine(accountant="rdp")
        return engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=cfg.trained_noise_multiplier,
            max_grad_norm=cfg.clip_norm,
            poisson_sampling=True,
            noise_generator=torch_generator(seed, 0, 0, "sample_canaries_noise"),
        )


def train_opacus(
    config: SampleCanaryConfig, train_x: Tensor, train_y: Tensor, seed: int
) -> tuple[nn.Module, float, int]:
    """DP-SGD through :class:`opacus.PrivacyEngine` (Poisson sampling, flat clipping).

    Returns the trained model, the sampling rate and the number of steps taken.
    """

    model = _mlp(config.hidden_units, torch_generator(seed, 0, 0, "sample_canaries_init"))
    model, optimizer, loader = _opacus_private(model, train_x, train_y, config, seed)
    sampling_rate = 1.0 / len(loader)
    steps = 0
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' full-backward-hook notice on leaf inputs
        for _ in range(config.epochs):
            for x, y in loader:
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                optimizer.step()
                steps += 1
    return model, sampling_rate, steps


def train_fedguard(
    config: SampleCanaryConfig, train_x: Tensor, train_y: Tensor, seed: int
) -> tuple[nn.Module, float, int]:
    """DP-SGD through fedguard's :func:`~fedguard.core.local_training.train_dp_sgd` (one client).

    Poisson rate ``q = B / N``, ``epochs · ⌈N / B⌉`` steps, noise from the stream
    ``(seed, 0, 0, "dp_sgd_noise")``; returns the trained model, ``q`` and the step count.
    """
    from fedguard.core.local_training import (
        ClientData,
        DPSGDConfig,
        LocalTrainingConfig,
        dp_sgd_sampling_rate,
        dp_sgd_steps,
        train_dp_sgd,
    )
    from fedguard.models.flat import FlatModel

    module = _mlp(config.hidden_units, torch_generator(seed, 0, 0, "sample_canaries_init"))
    flat = FlatModel.of(module)
    params = flat.initial_params()  # (d,)
    local = LocalTrainingConfig(
        local_epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
    )
    dp = DPSGDConfig(noise_multiplier=config.trained_noise_multiplier, clip_norm=config.clip_norm)
    data = ClientData.pad([train_x], [train_y])
    delta = train_dp_sgd(flat, params, data, [0], local, dp, seed, 0)  # (1, d)
    with torch.no_grad():
        named = flat.layout.unflatten(params + delta[0])
        for name, value in module.named_parameters():
            value.copy_(named[name])
    n = int(train_y.shape[0])
    return module, dp_sgd_sampling_rate(n, local), dp_sgd_steps(n, local)


def sample_canary_audit(
    config: SampleCanaryConfig | None = None, seed: int = 0
) -> SampleCanaryAudit:
    """Train DP-SGD once with mislabelled canaries and bound its record-level ε from below.

    Parameters
    ----------
    config
        Sizes, DP-SGD settings, the claimed and actual noise, δ, confidence and score.
    seed
        Seeds the data split, canary labels, inclusion coins, initialisation, batches and noise.

    Returns
    -------
    SampleCanaryAudit
        The one-run lower bound (an :class:`AuditResult`), the Opacus and fedguard RDP upper bounds
        for the claimed noise multiplier, ``ratio = lower / upper_opacus``, the ceiling, the
        realised sampling rate and step count, per-canary scores and inclusion, test accuracy.

    References
    ----------
    Steinke, Nasr and Jagielski (2023), Algorithm 1 with mislabelled input-space canaries.
    """
    cfg = config if config is not None else SampleCanaryConfig()
    data = mislabelled_canaries(cfg, seed)
    mask = torch.from_numpy(data.included)
    train_x = torch.cat([data.train_x, data.canary_x[mask]])  # (N, 64)
    train_y = torch.cat([data.train_y, data.canary_y[mask]])  # (N,)
    trainer = train_opacus if cfg.trainer == "opacus" else train_fedguard
    model, rate, steps = trainer(cfg, train_x, train_y, seed)
    model.eval()
    with torch.no_grad():
        scores = canary_scores(model(data.canary_x), data.canary_y, cfg.score)  # (m,)
        accuracy = float((model(data.test_x).argmax(dim=1) == data.test_y).float().mean())
    return _finish_audit(
        cfg,
        scores,
        data.included,
        rate,
        steps,
        accuracy,
        "one_run_sample_canaries",
        {"score": cfg.score, "trainer": cfg.trainer},
    )


def _finish_audit(
    cfg: SampleCanaryConfig,
    scores: Any,
    included: Any,
    rate: float,
    steps: int,
    accuracy: float,
    method: str,
    extra: dict[str, Any],
) -> SampleCanaryAudit:
    """One-run lower bound from the canary scores, next to the accountants' ε for the claim."""
    base = one_run_audit(scores, included, confidence=cfg.confidence, delta=cfg.delta)
    eps_opacus, eps_fedguard = epsilon_upper_bounds(cfg.noise_multiplier, rate, steps, cfg.delta)
    details = dict(base.details)
    details.update(
        extra,
        noise_multiplier=cfg.noise_multiplier,
        actual_noise_multiplier=cfg.trained_noise_multiplier,
        sampling_rate=rate,
        steps=steps,
        epsilon_upper_opacus=eps_opacus,
        epsilon_upper_fedguard=eps_fedguard,
    )
    result = AuditResult(
        method=method,
        epsilon=base.epsilon,
        kind="lower_bound",
        delta=cfg.delta,
        confidence=cfg.confidence,
        details=details,
    )
    return SampleCanaryAudit(
        result=result,
        epsilon_upper_opacus=eps_opacus,
        epsilon_upper_fedguard=eps_fedguard,
        ratio=base.epsilon / eps_opacus,
        ceiling=float(details["ceiling"]),
        sampling_rate=rate,
        steps=steps,
        scores=scores,
        included=included,
        test_accuracy=accuracy,
    )


# --------------------------------------------------------------------------------------------
# Dirac gradient canaries (white-box, Opacus)


def dirac_canary_coordinates(n_canaries: int, hidden_units: int) -> tuple[Tensor, Tensor]:
    """``(rows, columns)`` of first-layer weights that no digit ever moves, one per canary.

    The digits pixels 0, 32 and 39 are 0 in every image, so the weights ``W₁[h, p]`` on them get
    a zero gradient from every real sample; canary ``j`` owns ``W₁[h_j, p_j]`` (pixel-major).
    """
    pixels = torch.tensor(ZERO_PIXELS)
    require(
        n_canaries <= len(ZERO_PIXELS) * hidden_units,
        "n_canaries",
        f"at most {len(ZERO_PIXELS)}·hidden_units for Dirac gradient canaries",
    )
    index = torch.arange(n_canaries)
    return index % hidden_units, pixels[index // hidden_units]


#: Digits pixels that are 0 in all 1,797 images.
ZERO_PIXELS: tuple[int, ...] = (0, 32, 39)


def gradient_canary_audit(
    config: SampleCanaryConfig | None = None, seed: int = 0
) -> SampleCanaryAudit:
    """One-run audit of Opacus DP-SGD with Dirac gradient canaries (white-box).

    Canary ``j`` is a per-sample gradient equal to ``C·e_j`` on its own coordinate (a first-layer
    weight on an always-zero pixel, :func:`dirac_canary_coordinates`), inserted with probability
    ½. An inserted canary joins each step's Poisson batch with the loader's rate ``q`` (its own
    coins, stream ``(seed, 0, 0, "gradient_canary_batches")``) and is appended to Opacus'
    per-sample gradients before clipping, noise and averaging. Since no real sample moves ``e_j``,
    the score ``θ₀[j] − θ_T[j]`` is ``(lr/B)·(C·k_j + Σ_t noise_t[j])`` with ``k_j`` the number of
    steps canary ``j`` was sampled in. The ``score`` and ``trainer`` fields of ``config`` are not
    used (Opacus only); accounting as in :func:`sample_canary_audit`.

    References
    ----------
    Nasr, M., Hayes, J., Steinke, T., Balle, B., Tramèr, F., Jagielski, M., Carlini, N. and
    Terzis, A. (2023). Tight auditing of differentially private machine learning. *USENIX
    Security 2023* (Dirac gradient canaries).
    Steinke, Nasr and Jagielski (2023), section 7 (white-box one-run audit).
    """

    cfg = config if config is not None else SampleCanaryConfig()
    rows, columns = dirac_canary_coordinates(cfg.n_canaries, cfg.hidden_units)
    data = mislabelled_canaries(cfg, seed)  # reuses the split and the inclusion coins
    included = data.included
    model = _mlp(cfg.hidden_units, torch_generator(seed, 0, 0, "sample_canaries_init"))
    first = model[0]
    assert isinstance(first, nn.Linear)
    start = first.weight.detach()[rows, columns].clone()  # (m,)
    private, optimizer, loader = _opacus_private(model, data.train_x, data.train_y, cfg, seed)
    rate = 1.0 / len(loader)
    coins = numpy_generator(seed, 0, 0, "gradient_canary_batches")
    inserted = torch.from_numpy(np.flatnonzero(included))  # (k,)
    steps = 0
    private.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' full-backward-hook notice on leaf inputs
        for _ in range(cfg.epochs):
            for x, y in loader:
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(private(x), y).backward()
                chosen = inserted[torch.from_numpy(coins.random(inserted.numel()) < rate)]
                _append_dirac_rows(private, first, rows[chosen], columns[chosen], cfg.clip_norm)
                optimizer.step()
                steps += 1
    with torch.no_grad():
        scores = (start - first.weight[rows, columns]).to(torch.float64).numpy()  # (m,)
        accuracy = float((private(data.test_x).argmax(dim=1) == data.test_y).float().mean())
    return _finish_audit(
        cfg,
        scores,
        included,
        rate,
        steps,
        accuracy,
        "one_run_gradient_canaries",
        {"canaries": "dirac_gradient"},
    )


def _append_dirac_rows(
    private: nn.Module, first: nn.Linear, rows: Tensor, columns: Tensor, clip_norm: float
) -> None:
    """Append one per-sample gradient ``C·e_j`` per chosen canary to every ``grad_sample``."""
    count = int(rows.numel())
    if count == 0:
        return
    for param in private.parameters():
        sample: Tensor = getattr(param, "grad_sample")  # noqa: B009  (batch, *shape), Opacus'
        extra = sample.new_zeros((count, *param.shape))
        if param is first.weight:
            extra[torch.arange(count), rows, columns] = clip_norm
        setattr(param, "grad_sample", torch.cat([sample, extra]))  # noqa: B010
