"""configs/matrices/lora_privacy.yaml expands as documented: every text attack × every adapter
defense × 3 seeds, a defense entry's ``model:`` overrides reaching the cell's model only."""

from __future__ import annotations

from pathlib import Path

import yaml

from fedguard.matrix.config import expand_cells, load_matrix

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "matrices" / "lora_privacy.yaml"


def test_lora_privacy_matrix_expands_to_every_attack_defense_and_seed() -> None:
    cfg, base = load_matrix(CONFIG)
    cells = expand_cells(cfg, base)
    assert len(cells) == 5 * 7 * 3
    assert {c.seed for c in cells} == {0, 1, 2}
    attacks = {c.attack.split("(")[0] for c in cells}
    assert attacks == {"none", "canary_exposure", "extraction", "sequence_membership", "dager"}
    adapter = {c.defense: c.spec.model.params["adapter"] for c in cells}
    assert adapter["mean"] == "none" and adapter["secagg"] == "none"  # full fine-tuning
    assert adapter["lora"] == adapter["fedrand"] == "lora" and adapter["ffa_lora"] == "ffa_lora"
    fedrand = next(c for c in cells if c.defense == "fedrand")
    assert fedrand.spec.defense.payload is not None
    assert fedrand.spec.defense.payload.name == "fedrand"
    dp = sorted({c.defense for c in cells if c.defense.startswith("dp_lora")})
    assert dp == ["dp_lora:noise_multiplier=0.5", "dp_lora:noise_multiplier=2.0"]


def test_model_overrides_merge_into_a_nested_params_model(tmp_path: Path) -> None:
    cfg = {
        "name": "m",
        "base": {
            "data": {"dataset": "digits"},
            "model": {"name": "mlp", "params": {"hidden": [8]}},
            "clients": {"n_clients": 4},
        },
        "attacks": [],
        "defenses": [{"label": "wide", "model": {"hidden": [16]}}],
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cells = {c.defense: c for c in expand_cells(*load_matrix(path))}
    assert cells["mean"].spec.model.params["hidden"] in ([8], (8,))
    assert cells["wide"].spec.model.params["hidden"] in ([16], (16,))
