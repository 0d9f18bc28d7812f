"""Data-poisoning attacks and free-riders."""

from __future__ import annotations

import pytest
import torch

from fedguard.api import FreeRiderContext
from fedguard.attacks.free_riders.delta_replay import DeltaReplay
from fedguard.attacks.free_riders.disguised import DisguisedFreeRider
from fedguard.attacks.free_riders.noise import NoiseFreeRider
from fedguard.attacks.free_riders.zero import ZeroFreeRider
from fedguard.attacks.poisoning.backdoor import Backdoor
from fedguard.attacks.poisoning.label_flip import LabelFlip
from fedguard.errors import ConfigError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_label_flip_default_and_custom_mappings() -> None:
    x = torch.zeros(6, 3)
    y = torch.tensor([0, 1, 2, 3, 4, 9])
    _, flipped = LabelFlip().poison(x, y, 10, _gen())
    assert flipped.tolist() == [9, 8, 7, 6, 5, 0]
    _, custom = LabelFlip(mapping={1: 7, 9: 2}).poison(x, y, 10, _gen())  # type: ignore[arg-type]
    assert custom.tolist() == [0, 7, 2, 3, 4, 2]
    assert LabelFlip(mapping=[[1, 7]]).mapping == ((1, 7),)  # type: ignore[arg-type]
    _, half = LabelFlip(flip_fraction=0.5).poison(x, y, 10, _gen())
    assert int((half != y).sum()) == 3
    with pytest.raises(ConfigError, match="mapping"):
        LabelFlip(mapping={1: -2})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="mapping"):
        LabelFlip(mapping={1: 12}).poison(x, y, 10, _gen())  # type: ignore[arg-type]


def test_backdoor_pixel_pattern_on_images_and_flat_digits() -> None:
    images = torch.rand(20, 1, 8, 8)
    labels = torch.arange(20) % 10
    bd = Backdoor(target_label=3, poison_fraction=0.5, trigger_size=2, trigger_value=1.5)
    px, py = bd.poison(images, labels, 10, _gen())
    stamped = (px[:, 0, 6:, 6:] == 1.5).flatten(1).all(1)
    assert int(stamped.sum()) == 10 and bool((py[stamped] == 3).all())
    assert torch.equal(px[~stamped], images[~stamped])
    flat = images.reshape(20, 64)
    fx, _ = Backdoor(trigger_value=1.5, image_shape=(8, 8)).poison(flat, labels, 10, _gen())
    assert torch.equal(fx.reshape(20, 1, 8, 8)[stamped], px[stamped])
    tx, ty = bd.triggered(images, labels)  # type: ignore[misc]
    assert tx.shape[0] == int((labels != 3).sum()) and bool((ty == 3).all())
    assert bool((tx[:, 0, 6:, 6:] == 1.5).all())


def test_backdoor_feature_trigger_on_tabular() -> None:
    x = torch.randn(10, 30)
    y = torch.zeros(10, dtype=torch.long)
    y[5:] = 1
    out = Backdoor(target_label=0, trigger_size=3, poison_fraction=1.0).poison(x, y, 2, _gen())
    assert torch.equal(out[0][:, :27], x[:, :27])
    assert bool((out[0][:, 27:] == x.max()).all()) and bool((out[1] == 0).all())
    with pytest.raises(ConfigError, match="image_shape"):
        Backdoor(image_shape=(7, 7)).poison(x, y, 2, _gen())


def _fctx(round_index: int, deltas: list[torch.Tensor], d: int = 1000) -> FreeRiderContext:
    return FreeRiderContext(
        round=round_index, global_params=torch.ones(d), global_deltas=deltas, generator=_gen(3)
    )


def test_zero_noise_and_replay_free_riders() -> None:
    d1, d2 = torch.full((1000,), 0.1), torch.full((1000,), 0.2)
    assert torch.equal(ZeroFreeRider()(_fctx(2, [d1])), torch.zeros(1000))
    noise = NoiseFreeRider(std=0.5)(_fctx(2, []))
    assert abs(float(noise.std()) - 0.5) < 0.05
    assert torch.equal(DeltaReplay()(_fctx(3, [d1, d2])), d2)
    assert torch.equal(DeltaReplay(lag=2)(_fctx(3, [d1, d2])), d1)
    assert torch.equal(DeltaReplay()(_fctx(1, [])), torch.zeros(1000))


def test_disguised_free_rider_scale_decays() -> None:
    fr = DisguisedFreeRider(noise_scale=2.0, decay=1.0)
    first = torch.full((1000,), 0.3)
    assert fr.std(_fctx(3, [first, torch.ones(1000)])) == pytest.approx(2.0 * 0.3 / 4)
    out = fr(_fctx(3, [first]))
    assert abs(float(out.std()) - 0.15) < 0.015
    assert fr.std(_fctx(0, [])) == pytest.approx(2.0 * 1e-3)
    assert torch.equal(fr(_fctx(3, [first])), out)


def test_random_labels_are_uniform_and_seeded() -> None:
    import torch

    from fedguard.attacks.poisoning.random_labels import RandomLabels

    x = torch.zeros(4000, 3)
    y = torch.zeros(4000, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    fx, fy = RandomLabels().poison(x, y, 10, gen)
    assert fx is x
    counts = torch.bincount(fy, minlength=10).float()
    assert (counts - 400).abs().max() < 80  # ≈ uniform over 10 classes
    again = RandomLabels().poison(x, y, 10, torch.Generator().manual_seed(0))[1]
    assert torch.equal(fy, again)
    half = RandomLabels(fraction=0.5).poison(x, y, 10, torch.Generator().manual_seed(1))[1]
    assert 0.5 <= float((half == 0).float().mean()) <= 0.6  # half untouched, a tenth of the rest 0


def test_duplicate_clients_get_an_exact_copy() -> None:
    from fedguard.config import parse_spec
    from fedguard.launch import build_simulation

    spec = parse_spec(
        {"clients": {"n_clients": 6}, "data": {"duplicate_clients": {5: 0}}, "model": "logreg"}
    )
    sim = build_simulation(spec)
    x0, y0 = sim.data.client_arrays(0)
    x5, y5 = sim.data.client_arrays(5)
    assert torch.equal(x0, x5) and torch.equal(y0, y5)
