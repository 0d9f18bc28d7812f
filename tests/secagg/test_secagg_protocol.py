"""The protocol end to end: exact sums under dropouts, aborts, privacy of the view, attacks."""

from __future__ import annotations

import struct
from collections.abc import Mapping

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from scipy import stats

from defenses.secure_aggregation import crypto
from defenses.secure_aggregation.errors import ProtocolAbort, ProtocolViolation
from defenses.secure_aggregation.graph import Graph, complete_graph, harary_graph
from defenses.secure_aggregation.messages import (
    HEADER_BYTES,
    ShareKind,
    Stage,
    pack,
    payload,
    peek,
    read_ids,
    read_unmask,
)
from defenses.secure_aggregation.protocol import DropPoint, ProtocolConfig, run_protocol
from fedguard.errors import ConfigError, UserError


def _inputs(ids: tuple[int, ...], d: int, bits: int, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    dtype = np.uint32 if bits <= 32 else np.uint64
    return {u: rng.integers(0, 2**bits, d, dtype=np.uint64).astype(dtype) for u in ids}


def _plain_sum(inputs: Mapping[int, np.ndarray], who: tuple[int, ...], bits: int) -> list[int]:
    d = len(next(iter(inputs.values())))
    return [sum(int(inputs[u][j]) for u in who) % 2**bits for j in range(d)]


def _expected_abort(graph: Graph, t: int, drops: Mapping[int, int]) -> bool:
    """Oracle: does some step see fewer than t parties (globally or in a neighbourhood)?"""
    u1 = set(graph)
    u2 = {u for u in u1 if drops.get(u, 0) != DropPoint.BEFORE_SHARES}
    u3 = {u for u in u2 if drops.get(u, 0) != DropPoint.BEFORE_MASKED}
    u5 = {u for u in u3 if drops.get(u, 0) != DropPoint.BEFORE_UNMASK}

    def closed(u: int) -> set[int]:
        return set(graph[u]) | {u}

    if min(len(u1), len(u2), len(u3), len(u5)) < t:
        return True
    # Each client checks its own neighbourhood when it acts: keys (U1), shares received (U3
    # are the clients still acting when masking).
    if any(len(closed(u) & u1) < t for u in u2) or any(len(closed(u) & u2) < t for u in u3):
        return True
    need = u3 | {w for w in u2 - u3 if graph[w] & u3}
    return any(len(closed(w) & u5) < t for w in need)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_unmasked_sum_equals_plain_sum_or_clear_abort(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 11), label="n")
    d = data.draw(st.integers(1, 24), label="d")
    bits = data.draw(st.sampled_from([1, 7, 16, 31, 32, 40, 64]), label="bits")
    ids = tuple(sorted(data.draw(st.sets(st.integers(0, 300), min_size=n, max_size=n))))
    plus = data.draw(st.booleans(), label="secagg_plus") and n >= 4
    if plus:
        k = data.draw(st.sampled_from([2, 4]), label="k")
        graph = harary_graph(ids, k, torch.Generator().manual_seed(data.draw(st.integers(0, 99))))
    else:
        graph = complete_graph(ids)
    m = max(len(v) + 1 for v in graph.values())
    t = data.draw(st.integers(1, min(len(v) + 1 for v in graph.values())), label="t")
    drops = {u: data.draw(st.sampled_from([0, 0, 1, 2, 3]), label=f"drop{u}") for u in ids}
    cfg = ProtocolConfig(
        round_index=data.draw(st.integers(0, 2**40)),
        dim=d,
        bits=bits,
        threshold=t,
        graph=graph,
        consistency_check=data.draw(st.booleans(), label="consistency"),
        allow_unsafe_threshold=2 * t <= m,
    )
    inputs = _inputs(ids, d, bits, seed=n * 1000 + d)
    if _expected_abort(graph, t, drops):
        event("abort")
        with pytest.raises(ProtocolAbort, match="threshold"):
            run_protocol(cfg, inputs, drops)
        return
    event("sum")
    res = run_protocol(cfg, inputs, drops)
    assert res.survivors == tuple(u for u in ids if drops[u] in (0, 3))
    assert [int(v) for v in res.residue_sum] == _plain_sum(inputs, res.survivors, bits)
    # Dropout recovery: seeds of survivors, keys of dropped clients with a surviving neighbour.
    seeds = {w for w, k in res.reconstructed.items() if k == ShareKind.SEED}
    keys = {w for w, k in res.reconstructed.items() if k == ShareKind.KEY}
    assert seeds == set(res.survivors)
    assert keys == {w for w in ids if drops[w] == 2 and graph[w] & seeds}


def test_fewer_than_t_survivors_abort_with_a_clear_reason() -> None:
    ids = tuple(range(6))
    cfg = ProtocolConfig(round_index=1, dim=4, bits=16, threshold=4, graph=complete_graph(ids))
    inputs = _inputs(ids, 4, 16, 0)
    with pytest.raises(ProtocolAbort, match=r"only 3 clients sent masked inputs; the threshold is"):
        run_protocol(cfg, inputs, {0: 2, 1: 2, 2: 2})
    with pytest.raises(ProtocolAbort, match=r"only 3 clients answered the unmasking"):
        run_protocol(cfg, inputs, {0: 3, 1: 3, 2: 3})
    assert issubclass(ProtocolAbort, UserError)


def test_never_both_shares_of_one_client_leave_any_holder() -> None:
    ids = tuple(range(8))
    cfg = ProtocolConfig(round_index=2, dim=3, bits=12, threshold=5, graph=complete_graph(ids))
    seen: list[bytes] = []

    def spy(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        if stage == Stage.UNMASK:
            seen.extend(msgs)
        return msgs

    inputs = _inputs(ids, 3, 12, 1)
    res = run_protocol(cfg, inputs, {1: DropPoint.BEFORE_MASKED, 6: 1}, intercept=spy)
    kinds: dict[int, set[ShareKind]] = {}
    for msg in seen:
        for owner, kind, _ in read_unmask(payload(msg), cfg.share_bytes):
            kinds.setdefault(owner, set()).add(kind)
    assert all(len(k) == 1 for k in kinds.values())
    assert kinds[1] == {ShareKind.KEY} and kinds[0] == {ShareKind.SEED} and 6 not in kinds
    assert [int(v) for v in res.residue_sum] == _plain_sum(inputs, res.survivors, 12)


def _masked_vector(x: np.ndarray, bits: int) -> np.ndarray:
    ids = (0, 1, 2)
    cfg = ProtocolConfig(
        round_index=0, dim=x.size, bits=bits, threshold=2, graph=complete_graph(ids)
    )
    captured: dict[int, np.ndarray] = {}

    def spy(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        if stage == Stage.MASKED:
            for m in msgs:
                body = payload(m)
                captured[peek(m).sender] = np.frombuffer(body[12:], dtype="<u4")
        return msgs

    inputs = {0: x, 1: np.zeros_like(x), 2: np.zeros_like(x)}
    run_protocol(cfg, inputs, intercept=spy)
    return captured[0]


def test_a_masked_vector_is_uniform_in_z_r_whatever_the_input() -> None:
    bits, d = 8, 40_000
    views = []
    cases = (np.zeros(d, np.uint32), np.full(d, 255, np.uint32), np.arange(d, dtype=np.uint32) % 7)
    for x in cases:
        y = _masked_vector(x, bits)
        counts = np.bincount(y.astype(np.int64), minlength=2**bits)
        assert counts.size == 2**bits  # stays in Z_R
        assert stats.chisquare(counts).pvalue > 1e-4
        views.append(counts)
    # The server cannot tell the inputs apart from the masked vectors (two-sample chi-square).
    assert stats.chi2_contingency(np.stack(views[:2])).pvalue > 1e-4


def test_server_view_without_threshold_shares_reveals_nothing() -> None:
    """The server's view before unmasking: masked vectors (uniform, above) and ciphertexts it
    cannot open; with only t − 1 answers to unmasking it learns no sum at all (abort)."""
    ids = tuple(range(5))
    cfg = ProtocolConfig(round_index=9, dim=64, bits=16, threshold=3, graph=complete_graph(ids))
    x = _inputs(ids, 64, 16, 3)
    shares_seen: list[bytes] = []

    def spy(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        if stage == Stage.SHARES:
            shares_seen.extend(msgs)
        return msgs

    with pytest.raises(ProtocolAbort):
        run_protocol(cfg, x, {0: 3, 1: 3, 2: 3}, intercept=spy)
    # Share plaintexts never appear on the wire: only AEAD ciphertexts of the right length.
    for m in shares_seen:
        body = payload(m)
        (count,) = struct.unpack(">I", body[:4])
        assert count == 4
        assert len(body) == 4 + count * (6 + 12 + 8 + 2 * cfg.share_bytes + 16)


def test_tampered_share_ciphertext_is_rejected() -> None:
    ids = tuple(range(4))
    cfg = ProtocolConfig(round_index=3, dim=5, bits=10, threshold=3, graph=complete_graph(ids))

    def flip(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        if stage == Stage.FORWARD:
            m = bytearray(msgs[0])
            m[-1] ^= 1  # last byte of the last ciphertext (its tag)
            msgs = [bytes(m), *msgs[1:]]
        return msgs

    with pytest.raises(ProtocolViolation, match="failed authentication"):
        run_protocol(cfg, _inputs(ids, 5, 10, 0), intercept=flip)


def test_replayed_and_stale_messages_are_rejected() -> None:
    ids = tuple(range(4))
    cfg = ProtocolConfig(round_index=3, dim=5, bits=10, threshold=3, graph=complete_graph(ids))
    x = _inputs(ids, 5, 10, 0)

    def replay(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        return [*msgs, msgs[0]] if stage == Stage.MASKED else msgs

    with pytest.raises(ProtocolViolation, match="twice"):
        run_protocol(cfg, x, intercept=replay)

    old: list[bytes] = []
    run_protocol(
        ProtocolConfig(round_index=2, dim=5, bits=10, threshold=3, graph=complete_graph(ids)),
        x,
        intercept=lambda s, m: (old.extend(m) if s == Stage.MASKED else None) or m,
    )

    def stale(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        if stage == Stage.MASKED:  # client 0's masked input of round 2 replayed in round 3
            return [old[0], *msgs[1:]]
        return msgs

    with pytest.raises(ProtocolViolation, match="stale or replayed"):
        run_protocol(cfg, x, intercept=stale)

    def downlink_replay(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        return [*msgs, msgs[-1]] if stage == Stage.KEYS else msgs

    with pytest.raises(ProtocolViolation, match="received two KEYS"):
        run_protocol(cfg, x, intercept=downlink_replay)


def test_ciphertext_is_bound_to_round_and_parties() -> None:
    key = bytes(range(32))
    ct = crypto.encrypt(key, b"share", crypto.associated_data(5, 1, 2), "aes_gcm")
    assert crypto.decrypt(key, ct, crypto.associated_data(5, 1, 2), "aes_gcm") == b"share"
    for ad in (
        crypto.associated_data(6, 1, 2),
        crypto.associated_data(5, 2, 1),
        crypto.associated_data(5, 1, 3),
    ):
        with pytest.raises(crypto.AuthenticationFailure):
            crypto.decrypt(key, ct, ad, "aes_gcm")


def test_message_from_unknown_client_is_rejected() -> None:
    ids = tuple(range(4))
    cfg = ProtocolConfig(round_index=0, dim=2, bits=8, threshold=3, graph=complete_graph(ids))

    def inject(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        if stage == Stage.ADVERTISE:
            forged = pack(Stage.ADVERTISE, 0, 99, peek(msgs[0]).receiver, payload(msgs[0]))
            return [*msgs, forged]
        return msgs

    with pytest.raises(ProtocolViolation, match="unknown client 99"):
        run_protocol(cfg, _inputs(ids, 2, 8, 0), intercept=inject)
    with pytest.raises(ProtocolViolation, match="not registered"):
        run_protocol(cfg, _inputs((0, 1, 2, 3, 4), 2, 8, 0))


def test_consistency_round_catches_a_server_showing_different_survivor_sets() -> None:
    ids = tuple(range(6))
    cfg = ProtocolConfig(
        round_index=4, dim=3, bits=8, threshold=4, graph=complete_graph(ids), consistency_check=True
    )
    x = _inputs(ids, 3, 8, 2)
    res = run_protocol(cfg, x, {5: 2})
    assert res.stage_sets["signed"] == (0, 1, 2, 3, 4)
    assert [int(v) for v in res.residue_sum] == _plain_sum(x, res.survivors, 8)

    def lie(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        if stage == Stage.SURVIVORS:  # tell client 0 that client 4 dropped
            h = peek(msgs[0])
            fewer = [u for u in read_ids(payload(msgs[0])) if u != 4]
            body = struct.pack(">I", len(fewer)) + np.asarray(fewer, dtype=">u4").tobytes()
            msgs = [pack(h.stage, h.round_index, h.sender, h.receiver, body), *msgs[1:]]
        return msgs

    with pytest.raises(ProtocolViolation, match="consistency signature"):
        run_protocol(cfg, x, intercept=lie)


def test_other_field_prg_and_aead_choices_give_the_same_sum() -> None:
    ids = tuple(range(7))
    x = _inputs(ids, 9, 33, 5)
    choices = ((127, "aes_ctr", "chacha20_poly1305"), (31, "chacha20", "aes_gcm"))
    for field_bits, prg_name, aead in choices:
        cfg = ProtocolConfig(
            round_index=1,
            dim=9,
            bits=33,
            threshold=4,
            graph=complete_graph(ids),
            prg=prg_name,
            aead=aead,
            field_bits=field_bits,
        )
        res = run_protocol(cfg, x, {2: 2, 5: 1})
        assert [int(v) for v in res.residue_sum] == _plain_sum(x, res.survivors, 33)


def test_bad_configuration_is_refused_with_one_sentence() -> None:
    ids = tuple(range(5))
    g = complete_graph(ids)
    with pytest.raises(ConfigError, match="threshold must be between 1 and the smallest"):
        ProtocolConfig(round_index=0, dim=1, bits=8, threshold=6, graph=g)  # t > n
    with pytest.raises(ConfigError, match="not a strict majority"):
        ProtocolConfig(round_index=0, dim=1, bits=8, threshold=2, graph=g)
    ProtocolConfig(round_index=0, dim=1, bits=8, threshold=2, graph=g, allow_unsafe_threshold=True)
    with pytest.raises(ProtocolViolation, match="length 3"):
        run_protocol(
            ProtocolConfig(round_index=0, dim=3, bits=8, threshold=3, graph=g),
            {u: np.zeros(4 if u == 2 else 3, np.uint32) for u in ids},
        )
    assert HEADER_BYTES == 20


def test_a_client_answers_one_survivor_list_and_one_unmasking_request() -> None:
    """Driving the parties by hand: a server that asks twice (to learn both secrets) is refused."""
    from defenses.secure_aggregation.protocol import Client, Server

    ids = (0, 1, 2)
    cfg = ProtocolConfig(round_index=0, dim=4, bits=8, threshold=2, graph=complete_graph(ids))
    x = _inputs(ids, 4, 8, 0)
    clients = {u: Client(u, cfg, x[u]) for u in ids}
    server = Server(cfg)

    def route(msgs: list[bytes]) -> dict[int, bytes]:
        return {peek(m).receiver: m for m in msgs}

    keys = route(server.advertise([c.advertise() for c in clients.values()]))
    fwd = route(server.shares([clients[u].share_keys(keys[u]) for u in ids]))
    # client 2 drops before sending its masked input
    surv = route(server.masked([clients[u].masked_input(fwd[u]) for u in (0, 1)]))
    assert clients[0].receive_survivors(surv[0]) is None
    assert clients[1].receive_survivors(surv[1]) is None
    with pytest.raises(ProtocolViolation, match="already received a survivor list"):
        clients[0].receive_survivors(surv[0])
    answers = [clients[u].unmask(None) for u in (0, 1)]
    with pytest.raises(ProtocolViolation, match="one unmasking request"):
        clients[0].unmask(None)
    with pytest.raises(ProtocolViolation, match="one unmasking request"):
        clients[2].unmask(None)
    total = server.unmask(answers)
    assert [int(v) for v in total] == _plain_sum(x, (0, 1), 8)


def test_server_with_t_minus_one_colluding_clients_learns_nothing_about_an_input() -> None:
    """Server view + the full state of t − 1 = 2 colluders: their shares of client 0's secrets
    do not reconstruct them, and client 0's masked vector with every mask they know removed is
    still uniform in Z_R (the honest pairwise mask and the self mask remain)."""
    from defenses.secure_aggregation import prg, shamir
    from defenses.secure_aggregation.protocol import Client, Server

    ids, bits, d = (0, 1, 2, 3), 8, 30_000
    cfg = ProtocolConfig(round_index=7, dim=d, bits=bits, threshold=3, graph=complete_graph(ids))
    x0 = np.full(d, 5, dtype=np.uint32)
    inputs = {0: x0, **{u: np.zeros(d, np.uint32) for u in ids[1:]}}
    clients = {u: Client(u, cfg, inputs[u]) for u in ids}
    server = Server(cfg)

    def route(msgs: list[bytes]) -> dict[int, bytes]:
        return {peek(m).receiver: m for m in msgs}

    keys = route(server.advertise([c.advertise() for c in clients.values()]))
    fwd = route(server.shares([clients[u].share_keys(keys[u]) for u in ids]))
    masked = [clients[u].masked_input(fwd[u]) for u in ids]
    y0 = np.frombuffer(payload(masked[0])[12:], dtype="<u4").astype(np.uint32)
    colluders = (1, 2)
    # 1. their shares of client 0's secrets (t − 1 of them) do not give the secrets
    c = cfg.chunks
    pts = np.asarray([v + 1 for v in colluders], dtype=np.int64)
    held = np.stack([clients[v].shares_held[0] for v in colluders])  # (2, 2c)
    guess = shamir.combine(held, pts, cfg.prime)
    truth_b = shamir.secret_to_field(clients[0].b, cfg.prime)
    assert not np.array_equal(guess[c:], truth_b)
    # 2. remove every mask the coalition knows: y0 = x0 + PRG(b0) − Σ_v PRG(s_0v)
    residual = y0.copy()
    for v in colluders:
        key = crypto.agree(clients[v].s_sk, clients[0].s_pk, b"pairwise-mask", 7)
        prg.accumulate(residual, key, +1)
    residual &= np.uint32(2**bits - 1)
    counts = np.bincount(residual.astype(np.int64), minlength=2**bits)
    assert stats.chisquare(counts).pvalue > 1e-4
    # Oracle check that the test removed the right masks: with client 0's own secrets the
    # residual opens to x0 exactly.
    opened = residual.copy()
    prg.accumulate(opened, clients[0].b, -1)
    honest = crypto.agree(clients[3].s_sk, clients[0].s_pk, b"pairwise-mask", 7)
    prg.accumulate(opened, honest, +1)
    assert np.array_equal(opened & np.uint32(2**bits - 1), x0)


def test_server_rejects_wrong_share_kinds_and_misaddressed_shares() -> None:
    ids = tuple(range(6))
    cfg = ProtocolConfig(round_index=1, dim=3, bits=8, threshold=4, graph=complete_graph(ids))
    x = _inputs(ids, 3, 8, 4)

    def flip_kind(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        if stage == Stage.UNMASK:  # ask for the seed share of a dropped client's key share
            m = bytearray(msgs[0])
            m[HEADER_BYTES + 4 + 4] ^= 1
            msgs = [bytes(m), *msgs[1:]]
        return msgs

    with pytest.raises(ProtocolViolation, match="share of client 0, but the server needs"):
        run_protocol(cfg, x, intercept=flip_kind)

    def truncate(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        return [msgs[0][:-1], *msgs[1:]] if stage == Stage.UNMASK else msgs

    with pytest.raises(ProtocolViolation, match="truncated"):
        run_protocol(cfg, x, intercept=truncate)

    plus = ProtocolConfig(
        round_index=1,
        dim=3,
        bits=8,
        threshold=2,
        graph=harary_graph(ids, 2, torch.Generator().manual_seed(0)),
    )

    def misaddress(stage: Stage, msgs: list[bytes]) -> list[bytes]:
        if stage == Stage.SHARES:  # client sends its first share to a non-neighbour
            h = peek(msgs[0])
            outsider = next(v for v in ids if v not in plus.holders(h.sender))
            m = bytearray(msgs[0])
            m[HEADER_BYTES + 4 : HEADER_BYTES + 8] = struct.pack(">I", outsider)
            msgs = [bytes(m), *msgs[1:]]
        return msgs

    with pytest.raises(ProtocolViolation, match="not one of its neighbours"):
        run_protocol(plus, x, intercept=misaddress)


def test_server_rejects_a_share_addressed_twice_or_to_itself() -> None:
    """The addressees of all SHARES messages are checked at once (complete graph, honest
    variant): a client naming one peer twice, or itself, is rejected and named."""
    ids = (2, 4, 6, 8)
    cfg = ProtocolConfig(round_index=1, dim=3, bits=8, threshold=3, graph=complete_graph(ids))
    x = {u: np.arange(3, dtype=np.uint32) for u in ids}
    for target in ("twice", "itself"):

        def readdress(stage: Stage, msgs: list[bytes], target: str = target) -> list[bytes]:
            if stage != Stage.SHARES:
                return msgs
            h = peek(msgs[1])
            m = bytearray(msgs[1])
            size = (len(m) - HEADER_BYTES - 4) // 3  # three fixed-size entries follow the count
            first = m[HEADER_BYTES + 4 : HEADER_BYTES + 8]
            peer = first if target == "twice" else struct.pack(">I", h.sender)
            m[HEADER_BYTES + 4 + size : HEADER_BYTES + 8 + size] = peer
            return [msgs[0], bytes(m), *msgs[2:]]

        with pytest.raises(ProtocolViolation, match="client 4 addressed a share to client"):
            run_protocol(cfg, x, intercept=readdress)
