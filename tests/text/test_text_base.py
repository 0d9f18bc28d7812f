"""Tokenizer, GPT, per-token log-probabilities, planted secrets and text datasets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedguard.errors import ConfigError
from fedguard.models.gpt import GPT, gpt2_init, sequence_log_probs
from fedguard.models.losses import per_sample_cross_entropy
from fedguard.text.secrets import DEFAULT_FORMATS, SecretFormat, parse_formats, plant_secrets
from fedguard.text.tokenizer import BOS, EOS, VOCAB_SIZE, ByteTokenizer, decode, encode


def test_tokenizer_round_trips_unicode_and_drops_special_tokens() -> None:
    text = "my PIN is 0042 — naïve ✓"
    ids = encode(text)
    assert len(ids) == len(text.encode("utf-8")) and max(ids) < 256
    assert decode(ids) == text
    framed = ByteTokenizer().encode(text, bos=True, eos=True)
    assert framed[0] == BOS and framed[-1] == EOS and decode(framed) == text
    assert ByteTokenizer().vocab_size == VOCAB_SIZE == 259


def _tiny_gpt(context: int = 8) -> torch.nn.Module:
    module = GPT(n_layer=2, n_head=2, d_model=16, context=context).build((context,), VOCAB_SIZE)
    gpt2_init(module, torch.Generator().manual_seed(0))
    return module


def test_gpt_is_causal_and_shapes_logits() -> None:
    module = _tiny_gpt()
    tokens = torch.randint(0, 256, (3, 8), generator=torch.Generator().manual_seed(1))
    logits = module(tokens)
    assert logits.shape == (3, 8, VOCAB_SIZE)
    changed = tokens.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 256
    other = module(changed)
    torch.testing.assert_close(other[:, :5], logits[:, :5])  # the past does not see the future
    assert not torch.allclose(other[:, 5:], logits[:, 5:])


def test_default_gpt_size_is_cpu_sized() -> None:
    n = sum(p.numel() for p in GPT().build((64,), VOCAB_SIZE).parameters())
    assert 100_000 <= n <= 2_000_000


def test_sequence_log_probs_are_next_token_log_softmax() -> None:
    module = _tiny_gpt()
    tokens = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(2))
    got = sequence_log_probs(module, tokens)
    assert got.shape == (2, 5)
    for b in range(2):
        for t in range(5):
            probs = torch.softmax(module(tokens[b : b + 1, : t + 1])[0, -1], dim=-1)
            assert got[b, t].item() == pytest.approx(
                math.log(probs[tokens[b, t + 1]].item()), abs=1e-5
            )
    # the per-sample loss of the trainers is minus the mean per-token log-probability
    loss = per_sample_cross_entropy(module(tokens[:, :-1]), tokens[:, 1:])
    torch.testing.assert_close(loss, -got.mean(dim=1))


def test_gpt_rejects_windows_longer_than_its_context() -> None:
    with pytest.raises(ConfigError, match="model.context"):
        GPT(context=8).build((9,), VOCAB_SIZE)
    with pytest.raises(ConfigError, match="model.d_model"):
        GPT(n_head=3, d_model=16)


def test_secret_format_enumerates_and_inverts_its_candidates() -> None:
    fmt = SecretFormat("phone", "call {name} on 555-{d4}")
    assert fmt.size == 32 * 10**4 and fmt.prefix == "call "
    assert fmt.render(0) == "call Alice on 555-0000"
    assert fmt.render(10**4 + 7) == "call Bob on 555-0007"
    for index in (0, 1, 12345, fmt.size - 1):
        assert fmt.index_of(fmt.render(index)) == index
    assert fmt.index_of("call Bob on 555-12") is None
    pin = SecretFormat("pin", "my PIN is {d4}")
    assert list(pin.candidates(0, 3)) == ["my PIN is 0000", "my PIN is 0001", "my PIN is 0002"]
    assert len(set(pin.candidates())) == pin.size == 10**4


@pytest.mark.parametrize(
    ("template", "message"),
    [("my PIN is 1234", "has no slot"), ("my {pet} is cute", "unknown slot")],
)
def test_secret_format_without_candidates_is_one_sentence(template: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        SecretFormat("bad", template)
    assert "dataset.secret_formats.bad" in str(info.value) and str(info.value).count(". ") == 0


def test_planted_secrets_are_seeded_distinct_and_carry_repetitions() -> None:
    a = plant_secrets(DEFAULT_FORMATS, 4, 2, (1, 8), seed=3)
    assert a == plant_secrets(DEFAULT_FORMATS, 4, 2, (1, 8), seed=3)
    assert a != plant_secrets(DEFAULT_FORMATS, 4, 2, (1, 8), seed=4)
    assert [s.repetitions for s in a] == [1, 8] * 4
    assert [s.client for s in a] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len({(s.format, s.index) for s in a}) == len(a)
    formats = {f.name: f for f in DEFAULT_FORMATS}
    assert all(formats[s.format].render(s.index) == s.text for s in a)
    assert [f.name for f in parse_formats(["x {d2}"])] == ["format0"]


def test_bundled_text_dataset_plants_each_secret_its_number_of_times() -> None:
    from fedguard.text.dataset import TextDataset

    source = TextDataset(n_authors=3, chars_per_author=1500, window=32, repetitions=(2, 5))
    data = source.load()
    assert data.features.shape[1:] == (32,) and data.labels.shape == data.features.shape
    assert data.n_classes == VOCAB_SIZE and data.groups is not None
    # labels are the inputs shifted by one token
    torch.testing.assert_close(data.features[:, 1:].long(), data.labels[:, :-1])
    texts = [decode(row.long().tolist()) for row in data.features]
    for secret in source.planted_secrets():
        rows = [i for i, t in enumerate(texts) if t.startswith(secret.text)]
        assert len(rows) == secret.repetitions
        assert set(data.groups[rows].tolist()) == {secret.client}


def test_parquet_text_with_and_without_client_column(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fedguard.text.dataset import TextDataset

    texts = ["hello world, " * 10, "good morning " * 12, "another message " * 9]
    pq.write_table(pa.table({"text": texts, "user": ["u1", "u2", "u1"]}), tmp_path / "m.parquet")
    with_clients = TextDataset(
        path=str(tmp_path / "m.parquet"), client_column="user", window=16
    ).load()
    assert with_clients.groups is not None and set(with_clients.groups.tolist()) == {0, 1}
    without = TextDataset(path=str(tmp_path / "m.parquet"), window=16).load()
    assert without.groups is None
    with pytest.raises(ConfigError, match="client_column 'who'"):
        TextDataset(path=str(tmp_path / "m.parquet"), client_column="who").load()


def test_leaf_speaker_text_rebuilds_sliding_samples() -> None:
    from fedguard.text.dataset import leaf_speaker_text

    text = "To be, or not to be, that is the question"
    xs = [text[i : i + 10] for i in range(len(text) - 10)]
    ys = [text[i + 10] for i in range(len(text) - 10)]
    assert leaf_speaker_text(xs, ys) == text
    assert leaf_speaker_text(xs[:3] + xs[5:], ys[:3] + ys[5:]).count("\n") == 1


def test_plain_text_windows(tmp_path) -> None:
    from fedguard.text.dataset import TextDataset

    (tmp_path / "a.txt").write_text("abcdefghij" * 20)
    data = TextDataset(path=str(tmp_path / "a.txt"), window=9).load()
    assert len(data) == 200 // 10
    assert np.array_equal(data.features[0].long().numpy(), np.frombuffer(b"abcdefghi", np.uint8))


def test_secrets_reach_the_holding_client_and_only_formats_reach_attackers() -> None:
    from fedguard.core.federated_data import build_federated_data
    from fedguard.core.knowledge import attacker_knowledge
    from fedguard.data.natural import Natural
    from fedguard.text.dataset import TextDataset

    source = TextDataset(n_authors=6, chars_per_author=800, window=32, repetitions=(3,))
    data = build_federated_data(source.load(), Natural(), 4, 0.1, 0.0, seed=0)
    assert len(data.secrets) == 12 and data.secret_formats == source.formats()
    held = [s for s in data.secrets if s.client >= 0]
    assert len(held) == 2 * 4  # 4 of the 6 authors were drawn as clients
    for secret in held:
        x, _ = data.client_arrays(secret.client)
        texts = [decode(row.long().tolist()) for row in x]
        assert any(t.startswith(secret.text) for t in texts)
        others = [c for c in range(4) if c != secret.client]
        for c in others:
            assert not any(
                decode(r.long().tolist()).startswith(secret.text) for r in data.client_arrays(c)[0]
            )
    knowledge = attacker_knowledge(torch.nn.Linear(1, 1), data, 1, 4)
    assert knowledge.data.secret_formats == source.formats()
    assert "secrets" not in vars(knowledge.data)


def test_leaf_shakespeare_folder_gives_one_client_per_speaker(tmp_path) -> None:
    import json

    from fedguard.text.dataset import TextDataset

    lines = {
        "ROMEO": "But soft, what light through yonder window breaks? " * 3,
        "JULIET": "O Romeo, Romeo, wherefore art thou Romeo? " * 4,
    }
    doc: dict = {"users": [], "num_samples": [], "user_data": {}}
    for user, text in lines.items():
        xs = [text[i : i + 80] for i in range(len(text) - 80)]
        ys = [text[i + 80] for i in range(len(text) - 80)]
        doc["users"].append(user)
        doc["num_samples"].append(len(xs))
        doc["user_data"][user] = {"x": xs, "y": ys}
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "all.json").write_text(json.dumps(doc))
    data = TextDataset(path=str(tmp_path), window=24).load()
    assert data.groups is not None
    for group, text in zip((1, 0), lines.values(), strict=True):  # ids in sorted order of names
        rows = data.features[data.groups == group].long()
        joined = "".join(
            decode(r.tolist()) + decode([int(data.labels[data.groups == group][i, -1])])
            for i, r in enumerate(rows)
        )
        assert joined == text[: len(joined)] and len(joined) == 25 * (len(text) // 25)


def test_secret_formats_do_not_depend_on_the_order_of_a_mapping() -> None:
    """A run's spec.yaml stores mappings with sorted keys: the replay must plant the same secrets
    (failed before: formats followed the mapping's order, and ``fedguard verify`` differed)."""
    from fedguard.text.dataset import TextDataset

    pin, phone = "my PIN is {d4}", "call {name} on 555-{d4}"
    a = TextDataset(secret_formats={"pin": pin, "phone": phone}, n_authors=3)
    b = TextDataset(secret_formats={"phone": phone, "pin": pin}, n_authors=3)
    assert a.planted_secrets() == b.planted_secrets()
    assert torch.equal(a.load().features, b.load().features)
