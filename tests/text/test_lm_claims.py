"""The language-model claims' benchmark (benchmarks/lm_claims.py): its workload plants what it
says, and its verdict lines count what the numbers beside them show."""

from __future__ import annotations

import math

from benchmarks.lm_claims import EARLY_ROUND, REPETITIONS, claims_lines, memorization_spec


def _run(exposure: tuple[float, float, float], ppl: float, eps: float = math.inf) -> dict:
    return {
        "exposure": dict(zip(REPETITIONS, exposure, strict=True)),
        "perplexity": ppl,
        "epsilon": eps,
        "extracted": {"global": [(0.0, 1.0)], "client": [(1.0, 1.0)]},
    }


def test_workload_plants_pins_one_four_and_sixteen_times() -> None:
    spec = memorization_spec(3, pretrain_steps=0, noise_multiplier=1.0)
    dataset = spec.data.dataset.params
    assert tuple(dataset["repetitions"]) == (1, 4, 16)
    assert dataset["secrets_per_author"] == 3
    assert spec.seed == 3
    assert [c.name for c in spec.defense.client_transforms] == ["dp_sgd"]
    attacks = [a.name for a in spec.attack.privacy_attacks]
    assert attacks == ["canary_exposure", "canary_exposure", "extraction", "extraction"]


def test_verdicts_count_the_seeds_where_the_claim_holds() -> None:
    plain = [_run((1.0, 3.0, 8.0), 4.5), _run((1.2, 1.0, 6.0), 4.4), _run((0.9, 2.0, 7.0), 4.6)]
    dp = [
        _run((1.0, 2.0, 9.0), 7.0, 20.0),
        _run((1.0, 1.0, 3.0), 7.1, 20.0),
        _run((1.0, 1.0, 2.0), 7.2, 20.0),
    ]
    results = {
        "memorization": {"runs": {"no DP": plain, "DP-SGD z=1.0": dp}},
        "fedrand": {
            "lora": {"lira": [0.7, 0.8, 0.6], "perplexity": [8.0, 8.1, 8.0]},
            "fedrand": {"lira": [0.75, 0.7, 0.5], "perplexity": [8.0, 8.1, 8.0]},
        },
    }
    lines = claims_lines(results)
    assert "×1 < ×4 < ×16 on 2 of 3 seeds" in lines[0]  # the second seed has ×4 < ×1
    assert "on 2 of 3 seeds (3.00 vs 7.00 bits)" in lines[1]  # seed 0: DP 9 > 8
    assert "ε = 20" in lines[1]
    assert "on 2 of 3 seeds" in lines[2] and "FedRand" in lines[2]


def test_dp_is_also_compared_with_plain_training_at_comparable_perplexity() -> None:
    plain = [
        _run((1.0, 3.0, 8.0), 4.5) | {"early": {1: 1, 4: 2, 16: e}, "early_perplexity": 7.0}
        for e in (2.0, 4.0, 5.0)
    ]
    dp = [_run((1.0, 2.0, 3.0), 7.1, 20.0) for _ in range(3)]
    lines = claims_lines({"memorization": {"runs": {"no DP": plain, "DP-SGD z=0.5": dp}}})
    assert (
        f"after {EARLY_ROUND} round(s) (perplexity 7.00) on 2 of 3 seeds (3.00 vs 4.00 bits)"
        in lines[2]
    )


def test_dp_on_adapters_is_compared_with_adapters_without_dp() -> None:
    plain = [_run((1.0, 3.0, 9.0), 4.5) for _ in range(3)]
    lora = [_run((1.0, 1.0, e), 8.0) for e in (2.0, 2.5, 3.0)]
    lora_dp = [_run((1.0, 1.0, 2.2), 9.0, 20.0) for _ in range(3)]
    runs = {"no DP": plain, "LoRA, no DP": lora, "LoRA DP z=1.0": lora_dp}
    (line,) = claims_lines({"memorization": {"runs": runs}})[1:]
    assert "on 2 of 3 seeds (2.20 vs 2.50 bits), at perplexity 9.00 vs 8.00" in line
