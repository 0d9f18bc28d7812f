"""A commitment to the broadcast model bound into secure aggregation: clients holding different
models abort the round, also when the server forges the commitments it forwards; honest rounds
never abort."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from defenses.secure_aggregation import crypto
from defenses.secure_aggregation.errors import ModelCommitmentMismatch, ProtocolAbort
from defenses.secure_aggregation.graph import complete_graph, harary_graph
from defenses.secure_aggregation.messages import (
    DIGEST_BYTES,
    SIG_BYTES,
    Stage,
    ids_payload,
    keys_payload,
    pack,
    payload,
    peek,
    read_keys_and_cohort,
)
from defenses.secure_aggregation.model_digest import model_digest
from defenses.secure_aggregation.protocol import Client, ProtocolConfig, run_protocol
from defenses.secure_aggregation.transport import SecAggPlusTransport, SecAggTransport
from fedguard.errors import ConfigError, RoundAborted
from fedguard.types import RoundContext

IDS = (3, 5, 8, 11, 12, 20)
BITS = 20


def _config(active: bool, plus: bool = False) -> ProtocolConfig:
    graph = harary_graph(IDS, 4, torch.Generator().manual_seed(0)) if plus else complete_graph(IDS)
    t = 3 if plus else 4
    return ProtocolConfig(
        round_index=2, dim=16, bits=BITS, threshold=t, graph=graph,
        active_adversary=active, bind_model=True,
    )  # fmt: skip


def _inputs(seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {u: rng.integers(0, 2**BITS, 16, dtype=np.uint64).astype(np.uint32) for u in IDS}


def _exact(total: np.ndarray, x: dict[int, np.ndarray]) -> bool:
    plain = (sum(x[u].astype(np.int64) for u in IDS) % 2**BITS).astype(np.uint32)
    return bool((total == plain).all())


def _digests(odd: int | None = None) -> dict[int, bytes]:
    common = model_digest(torch.arange(10.0))
    out = dict.fromkeys(IDS, common)
    if odd is not None:
        out[odd] = model_digest(torch.arange(10.0) + 1e-3)
    return out


@pytest.mark.parametrize("active, plus", [(False, False), (True, False), (True, True)])
def test_honest_rounds_with_one_model_complete_exactly(active: bool, plus: bool) -> None:
    x = _inputs(1)
    res = run_protocol(_config(active, plus), x, model_digests=_digests())
    assert _exact(res.residue_sum, x)


@pytest.mark.parametrize("active", [False, True])
def test_a_client_holding_another_model_aborts_the_round_in_every_trial(active: bool) -> None:
    for trial, target in enumerate(IDS):
        with pytest.raises(ModelCommitmentMismatch, match="received different models") as err:
            run_protocol(_config(active), _inputs(trial), model_digests=_digests(target))
        assert isinstance(err.value, RoundAborted) and f"{target}" in str(err.value)


def _forge_keys(active: bool, forge: Callable[[int], bytes | None]) -> object:
    """A server that rewrites, in every KEYS message it forwards, each client's model digest
    into ``forge(receiver)`` (or drops the commitment block where that is None)."""

    def intercept(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        if stage != Stage.KEYS:
            return msgs
        out = []
        for m in msgs:
            h = peek(m)
            replace_with = forge(h.receiver)
            entries, cohort = read_keys_and_cohort(payload(m), active)
            forged = []
            for cid, c_pk, s_pk, sig in entries:
                if replace_with is None:
                    new = sig[:SIG_BYTES]
                else:
                    new = sig[:SIG_BYTES] + replace_with + sig[SIG_BYTES + DIGEST_BYTES :]
                forged.append((cid, c_pk, s_pk, new))
            body = keys_payload(forged) + (ids_payload(cohort) if active else b"")
            out.append(pack(h.stage, h.round_index, h.sender, h.receiver, body))
        return out

    return intercept


@pytest.mark.parametrize("active", [False, True])
def test_a_forged_per_client_commitment_aborts_the_round(active: bool) -> None:
    """The server shows each client commitments equal to its own digest (so that every client
    believes everyone holds its model), or the common model's digest, or strips them: the
    commitments carry their owners' signatures, which do not verify; the round aborts."""
    for target in IDS:
        digests = _digests(target)
        common = digests[IDS[0] if target != IDS[0] else IDS[1]]
        strategies: list[Callable[[int], bytes | None]] = [
            lambda receiver, d=digests: d[receiver],
            lambda _r, c=common: c,
            lambda _r: None,
        ]
        for forge in strategies:
            with pytest.raises(ModelCommitmentMismatch, match="forged|without a model"):
                run_protocol(
                    _config(active),
                    _inputs(0),
                    model_digests=digests,
                    intercept=_forge_keys(active, forge),  # type: ignore[arg-type]
                )


def test_pairwise_keys_are_bound_to_the_model_each_client_holds() -> None:
    """Even past the check, two clients with different models derive different keys."""
    cfg = _config(False)
    sk, peer = crypto.new_agreement_key(), crypto.new_agreement_key()
    pk, peer_pk = crypto.public_bytes(sk), crypto.public_bytes(peer)
    keys = []
    for digest in (_digests()[3], _digests(3)[3]):
        client = Client(3, cfg, _inputs(0)[3], crypto.new_signing_key(), {}, None, digest)
        keys.append(client._pair_key(sk, pk, 5, peer_pk, b"pairwise-mask"))
    assert keys[0] != keys[1]


def test_model_commitment_needs_every_client_digest() -> None:
    with pytest.raises(ConfigError, match="model_commitment needs"):
        run_protocol(_config(False), _inputs(0), model_digests={u: b"x" for u in IDS})


def _round(digests: tuple[bytes, ...] | None, n: int = 5) -> RoundContext:
    return RoundContext(1, 0, torch.zeros(12), tuple(range(n)), 10, model_digests=digests)


@pytest.mark.parametrize("transport_cls", [SecAggTransport, SecAggPlusTransport])
def test_transport_binds_the_round_digests(transport_cls: type[SecAggTransport]) -> None:
    updates = torch.randn(5, 12, generator=torch.Generator().manual_seed(0)) * 0.1
    weights = torch.ones(5, dtype=torch.float64)
    transport = transport_cls(model_commitment=True)
    same = (model_digest(torch.zeros(12)),) * 5
    for digests in (same, None):  # None: no broadcast stage, everyone holds the global model
        out = transport(updates, weights, _round(digests))
        assert torch.allclose(out.update_sum, updates.sum(0), atol=1e-4)
    odd = (*same[:2], model_digest(torch.ones(12)), *same[3:])
    with pytest.raises(ModelCommitmentMismatch):
        transport(updates, weights, _round(odd))
    # without the commitment the inconsistent round completes (secure aggregation alone does
    # not notice that clients trained different models)
    out = transport_cls()(updates, weights, _round(odd))
    assert torch.allclose(out.update_sum, updates.sum(0), atol=1e-4)
    assert issubclass(ModelCommitmentMismatch, ProtocolAbort)
