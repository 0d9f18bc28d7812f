"""Secure aggregation as a fedguard transport: the server sees only the weighted sum.

Weights are agreed in the clear (they are public: sample counts or FedAvg weights), and each
client encodes ``w_i / max_j w_j · clip(Δ_i)``; the server learns only
``Σ_{i ∈ U3} w_i · clip(Δ_i)`` (``update_sum``) and ``Σ_{i ∈ U3} w_i`` (``weight_sum``) over the
clients whose masked inputs arrived (U3). Clients that dropped out contribute to neither.
Robust aggregators needing individual updates are therefore incompatible with this transport
(``Aggregator.from_sum`` raises); per-client clipping before masking is allowed but, like every
client-side check, only binds honest clients (see the package threat model).

``info`` reports the measured cost and what the guarantees were: bytes sent / received per
surviving client (those whose input is in the sum), client and server seconds, dropouts, the
bit width, the wrap-around probability bound and, with a ``client_noise`` hook, the total noise
variance actually present after dropouts.

References
----------
.. [1] K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
   Learning", ACM CCS 2017.
.. [2] J. H. Bell, K. A. Bonawitz, A. Gascón, T. Lepoint, M. Raykova, "Secure Single-Server
   Aggregation with (Poly)Logarithmic Overhead", ACM CCS 2020.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from defenses.secure_aggregation import crypto, prg
from defenses.secure_aggregation.errors import ProtocolAbort, ProtocolViolation
from defenses.secure_aggregation.fixed_point import choose_encoding, decode, encode, to_ring
from defenses.secure_aggregation.graph import Graph, complete_graph, default_degree, harary_graph
from defenses.secure_aggregation.model_digest import model_digest
from defenses.secure_aggregation.noise import ClientNoise
from defenses.secure_aggregation.protocol import DropPoint, ProtocolConfig, run_protocol
from fedguard.api import Transport, TransportOutput, require, require_positive
from fedguard.errors import ConfigError
from fedguard.types import RoundContext


@dataclass(frozen=True)
class SecAggTransport(Transport):
    """Bonawitz et al. (2017) secure aggregation on the complete graph.

    Parameters
    ----------
    clip_range
        Every coordinate is clipped to ``[-clip_range, clip_range]`` before encoding.
    scale
        Fixed-point units per 1.0; the decoded sum is within ``max w · survivors / scale`` of the
        clipped weighted sum per coordinate.
    bits
        R = 2^bits; ``None`` picks the smallest width with room for the round's clients (and,
        with noise, wrap probability below ``max_wrap_probability``). Too small → error.
    threshold_fraction
        t = ⌊threshold_fraction · m⌋ + 1 of the m share holders of a neighbourhood.
        Below 0.5 (no strict majority) is refused unless ``allow_unsafe_threshold``.
    dropout_rate
        Simulated probability that a client drops out, at a uniformly chosen protocol step.
    consistency_check
        Run the Ed25519-signed consistency round (Bonawitz et al., Sec. 6) and sign key
        advertisements; implied by ``active_adversary``.
    active_adversary
        The variant that rejects tampering (see :mod:`defenses.secure_aggregation.authentication`):
        every client message signed (Ed25519, over the session, stage, round, sender, receiver
        and body), commitments to the self-mask seed and to every share with robust
        reconstruction, HKDF with a session salt and both identities and public keys in its
        info, the SecAgg+ graph drawn from a public beacon after all keys are committed, the
        consistency round over the survivors, cohort and graph, and a check that the survivors'
        pairwise masks pair up. Costs about one SHA-256 pass over every upload at the server.
    model_commitment
        Each client commits to the model it received (``RoundContext.model_digests``, the
        SHA-256 the broadcast stage computes; without a broadcast stage, the digest of the
        global model): the commitment is Ed25519-signed in its key advertisement, checked by
        every neighbour, and bound into the HKDF info of its pairwise keys, so that clients
        holding different models — a malicious server's model inconsistency — refuse to mask
        together and the round aborts (:class:`ModelCommitmentMismatch`, a ``RoundAborted``),
        also when the server rewrites a commitment it forwards. Implies the signed key
        advertisement and consistency round.
    min_cohort
        Fewest clients a round (and its survivor set U3) may have; below it the round aborts
        (:class:`ProtocolAbort`) instead of revealing a sum over too few clients. At least 2:
        the sum over one client is its update.
    client_noise
        Optional distributed-DP noise source (see :mod:`defenses.secure_aggregation.noise`).

    References
    ----------
    .. [1] K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
       Learning", ACM CCS 2017.
    """

    clip_range: float = 1.0
    scale: float = 2.0**20
    bits: int | None = None
    threshold_fraction: float = 0.5
    dropout_rate: float = 0.0
    consistency_check: bool = False
    active_adversary: bool = False
    model_commitment: bool = False
    min_cohort: int = 3
    allow_unsafe_threshold: bool = False
    prg: str = "chacha20"
    aead: str = "aes_gcm"
    shamir_field_bits: int = 31
    max_wrap_probability: float = 1e-9
    # A ClientNoise or None; typed Any so that config validation (pydantic) accepts the class.
    client_noise: Any = None

    reveals_individual_updates: ClassVar[bool] = False
    _stream: ClassVar[str] = "secagg"

    def __post_init__(self) -> None:
        require_positive(self, "clip_range", "scale")
        require(
            self.bits is None or (isinstance(self.bits, int) and 2 <= self.bits <= 64),
            "bits",
            "None (automatic) or an integer from 2 to 64",
        )
        require(
            0.0 < self.threshold_fraction < 1.0,
            "threshold_fraction",
            "strictly between 0 and 1",
        )
        require(
            self.threshold_fraction >= 0.5 or self.allow_unsafe_threshold,
            "threshold_fraction",
            "at least 0.5 (a strict majority of each neighbourhood) unless "
            "allow_unsafe_threshold is true",
        )
        require(0.0 <= self.dropout_rate < 1.0, "dropout_rate", "in [0, 1)")
        require(
            isinstance(self.min_cohort, int)
            and not isinstance(self.min_cohort, bool)
            and self.min_cohort >= 2,
            "min_cohort",
            "an integer of at least 2 (a sum over one client reveals its update)",
        )
        require(self.prg in prg.PRG_ALGORITHMS, "prg", f"one of {', '.join(prg.PRG_ALGORITHMS)}")
        require(
            self.aead in crypto.AEAD_ALGORITHMS,
            "aead",
            f"one of {', '.join(crypto.AEAD_ALGORITHMS)}",
        )
        require(self.shamir_field_bits in (31, 127), "shamir_field_bits", "31 or 127")
        require(0.0 < self.max_wrap_probability < 1.0, "max_wrap_probability", "in (0, 1)")
        require(
            self.client_noise is None or isinstance(self.client_noise, ClientNoise),
            "client_noise",
            "None or an object with __call__(encoded, generator), variance and tail_bound",
        )

    # -- graph and threshold ------------------------------------------------------------------
    def graph(self, ids: tuple[int, ...], ctx: RoundContext) -> Graph:
        return complete_graph(ids)

    def neighbourhood_size(self, n_clients: int) -> int:
        """Share holders per client (itself included)."""
        return n_clients

    def threshold(self, n_clients: int) -> int:
        return math.floor(self.threshold_fraction * self.neighbourhood_size(n_clients)) + 1

    def check_cohort(self, n_clients: int, n_byzantine: int) -> None:
        require(n_clients >= 1, "n_clients", "at least 1 under secure aggregation")
        m = self.neighbourhood_size(n_clients)
        if self.threshold(n_clients) > m:
            raise ConfigError(
                f"threshold_fraction {self.threshold_fraction} gives t = "
                f"{self.threshold(n_clients)} above the {m} share holders of a neighbourhood."
            )

    # -- the round ----------------------------------------------------------------------------
    def __call__(self, updates: Tensor, weights: Tensor, ctx: RoundContext) -> TransportOutput:
        ids = tuple(int(i) for i in ctx.sampled_ids)
        if updates.ndim != 2 or updates.shape[0] != len(ids):
            raise ProtocolViolation(
                f"secure aggregation expects an (n, d) update tensor with one row per sampled "
                f"client ({len(ids)}); got shape {tuple(updates.shape)}."
            )
        n, d = updates.shape
        expected_d = ctx.global_params.numel()
        if expected_d and d != expected_d:
            raise ProtocolViolation(
                f"client updates have length {d}, but the model has {expected_d} parameters."
            )
        w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)  # (n,)
        if w.numel() != n or not torch.isfinite(w).all() or (w < 0).any():
            raise ProtocolViolation(
                f"weights must be {n} finite non-negative numbers, one per client update."
            )
        if len(set(ids)) != n:
            raise ProtocolViolation("the round lists a client twice.")
        if n < self.min_cohort:
            raise ProtocolAbort(
                f"only {n} clients were sampled; secure aggregation needs at least min_cohort = "
                f"{self.min_cohort}, so the round is aborted."
            )
        self.check_cohort(n, 0)
        noise = self.client_noise
        encoding = choose_encoding(
            w,
            d,
            self.clip_range,
            self.scale,
            self.bits,
            noise.tail_bound if noise is not None else None,
            self.max_wrap_probability,
        )
        inputs: dict[int, np.ndarray] = {}
        seconds: dict[int, float] = {}
        clipped = 0
        for row, cid in enumerate(ids):  # each client encodes its own vector
            t0 = time.perf_counter()
            gen = ctx.generator(f"{self._stream}/encode", cid)
            ints, n_clip = encode(updates[row], float(w[row]), encoding, gen)  # (d,) int64
            if noise is not None:
                ints = noise(ints, ctx.generator(f"{self._stream}/noise", cid))
            inputs[cid] = to_ring(ints, encoding)
            seconds[cid] = time.perf_counter() - t0
            clipped += n_clip
        drops = self._drop_points(ids, ctx)
        config = ProtocolConfig(
            round_index=ctx.round,
            dim=d,
            bits=encoding.bits,
            threshold=self.threshold(n),
            graph=self.graph(ids, ctx),
            prg=self.prg,
            aead=self.aead,
            field_bits=self.shamir_field_bits,
            consistency_check=self.consistency_check,
            allow_unsafe_threshold=self.allow_unsafe_threshold,
            active_adversary=self.active_adversary,
            min_cohort=self.min_cohort,
            bind_model=self.model_commitment,
        )
        digests = self._model_digests(ids, ctx) if self.model_commitment else None
        result = run_protocol(config, inputs, drops, client_seconds=seconds, model_digests=digests)
        t0 = time.perf_counter()
        total = decode(result.residue_sum, encoding)  # (d,) float64
        decode_seconds = time.perf_counter() - t0
        survivors = result.survivors
        index = {cid: row for row, cid in enumerate(ids)}
        weight_sum = float(sum(float(w[index[u]]) for u in survivors))
        costs = list(result.client_costs.values())
        finished = [result.client_costs[u] for u in survivors]  # clients that sent their input
        unit = encoding.weight_unit / encoding.scale
        info: dict[str, Any] = {
            "transport": self.registry_name or self._stream,
            "clients": n,
            "survivors": len(survivors),
            "dropouts": n - len(survivors),
            "dropped_ids": tuple(sorted(set(ids) - set(survivors))),
            "threshold": config.threshold,
            "neighbourhood_size": self.neighbourhood_size(n),
            "bits": encoding.bits,
            "scale": encoding.scale,
            "wrap_probability": encoding.wrap_probability,
            "max_decoding_error": unit * len(survivors),
            "clipped_coordinates": clipped,
            "bytes_per_client": float(np.mean([c.bytes_sent for c in finished])),  # as plain
            "bytes_sent_per_client": float(np.mean([c.bytes_sent for c in finished])),
            "bytes_received_per_client": float(np.mean([c.bytes_received for c in finished])),
            "client_seconds_mean": float(np.mean([c.seconds for c in costs])),
            "client_seconds_max": float(np.max([c.seconds for c in costs])),
            "server_seconds": result.server_cost.seconds + decode_seconds,
            "server_bytes_sent": result.server_cost.bytes_sent,
            "server_bytes_received": result.server_cost.bytes_received,
            "reconstructed_mask_keys": sum(1 for k in result.reconstructed.values() if k == 0),
            "reconstructed_seeds": sum(1 for k in result.reconstructed.values() if k == 1),
            "active_adversary": self.active_adversary,
            "excluded_shares": sum(len(v) for v in result.excluded.values()),
        }
        if noise is not None:
            info["noise_clients"] = len(survivors)
            info["noise_variance_per_coordinate"] = noise.variance * len(survivors) * unit**2
            info["noise_variance_integer"] = noise.variance * len(survivors)
        return TransportOutput(
            updates=None,
            update_sum=total.to(updates.dtype if updates.is_floating_point() else torch.float64),
            weight_sum=weight_sum,
            info=info,
        )

    def _model_digests(self, ids: tuple[int, ...], ctx: RoundContext) -> dict[int, bytes]:
        """The SHA-256 of the model each client received, from the broadcast stage; without
        one every client received the global model."""
        if ctx.model_digests is None:
            digest = model_digest(ctx.global_params)
            return dict.fromkeys(ids, digest)
        if len(ctx.model_digests) != len(ids):
            raise ProtocolViolation(
                f"the round lists {len(ctx.model_digests)} model digests for {len(ids)} clients."
            )
        return {cid: bytes(d) for cid, d in zip(ids, ctx.model_digests, strict=True)}

    def _drop_points(self, ids: tuple[int, ...], ctx: RoundContext) -> dict[int, int]:
        if self.dropout_rate == 0.0:
            return {}
        gen = ctx.generator(f"{self._stream}/dropout")
        drop = torch.rand(len(ids), generator=gen, dtype=torch.float64) < self.dropout_rate
        step = torch.randint(
            int(DropPoint.BEFORE_SHARES),
            int(DropPoint.BEFORE_UNMASK) + 1,
            (len(ids),),
            generator=gen,
        )
        return {cid: int(step[i]) for i, cid in enumerate(ids) if bool(drop[i])}


@dataclass(frozen=True)
class SecAggPlusTransport(SecAggTransport):
    """SecAgg+ (Bell et al. 2020): the same protocol on a random k-regular Harary graph.

    ``neighbours`` is k (``None``: 2·⌈log2 n⌉, capped at n − 1); t applies per closed
    neighbourhood of k + 1 holders. The graph is drawn from the round's generator, or, with
    ``active_adversary``, from a public beacon read after all keys are committed.

    References
    ----------
    .. [1] J. H. Bell, K. A. Bonawitz, A. Gascón, T. Lepoint, M. Raykova, "Secure Single-Server
       Aggregation with (Poly)Logarithmic Overhead", ACM CCS 2020.
    """

    neighbours: int | None = None

    _stream: ClassVar[str] = "secagg_plus"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.neighbours is None or (isinstance(self.neighbours, int) and self.neighbours >= 1),
            "neighbours",
            "None (2·ceil(log2 n)) or a positive integer",
        )

    def degree(self, n_clients: int) -> int:
        k = default_degree(n_clients) if self.neighbours is None else self.neighbours
        return min(k, n_clients - 1)

    def neighbourhood_size(self, n_clients: int) -> int:
        return self.degree(n_clients) + 1

    def check_cohort(self, n_clients: int, n_byzantine: int) -> None:
        super().check_cohort(n_clients, n_byzantine)
        k = self.degree(n_clients)
        if k < n_clients - 1 and k % 2 and n_clients % 2:
            raise ConfigError(
                f"neighbours must be even for an odd cohort size; got k = {k} with "
                f"{n_clients} clients."
            )

    def graph(self, ids: tuple[int, ...], ctx: RoundContext) -> Graph:
        gen = ctx.generator(f"{self._stream}/graph")
        return harary_graph(ids, self.degree(len(ids)), gen)
