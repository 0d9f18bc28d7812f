"""Which defenses held: the one verdict rule of a matrix, used by the terminal, the CSV and the report.

The rule, in the order it is applied to each (defense, attack, setting):

1. **No verdict** where a cell or one of its baselines diverged (the run-integrity status
   ``diverged``) or where an accuracy it rests on sits at or below chance: ≤ 5 points above the
   larger of 1/classes and the share of the test set's most frequent class (what a constant
   prediction scores; on skewed data the higher of the two). A model that no longer learns has
   no accuracy left to lose, so a drop measured from or to the floor says nothing about the
   defense.
2. **Fails without attack** where the defense's own no-attack accuracy (mean over seeds) is more
   than 5 points below the undefended ``mean``'s: "held" would only mean "was already broken".
   A defense *better* than ``mean`` without attack is judged normally.
3. Otherwise the attack's effect is bounded: the one-sided 95% upper confidence bound (Student t
   over seeds; one seed has no interval and says so) of the accuracy drop — the defense's accuracy
   without the attack minus with it, paired by seed — must be ≤ 5 points, and, for a backdoor, that
   of the backdoor success rate ≤ 20%. Against gradient inversion the bound of the reconstruction
   PSNR must be ≤ 20 dB; against membership inference the bound of the attack's AUC ≤ 0.55.
   A defense that meets it **held**, otherwise it **fell**. The undefended ``mean`` is the baseline,
   not a defense: it is **not vulnerable** or **vulnerable** by the same bound.

References
----------
.. [1] Student (W. S. Gosset), "The probable error of a mean", Biometrika 6(1), 1908 — the one-sided
   t bound over seeds.
.. [2] Guerraoui, Gupta, Pinot, "Robust Machine Learning: Distributed Methods for Safe AI",
   Springer 2024, §3 — robustness judged against the no-attack, no-defense baseline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import stdtrit  # the t quantile itself: scipy.stats costs ~0.5 s to import

from fedguard.matrix.config import NO_ATTACK, NO_DEFENSE

DROP_THRESHOLD = 0.05  # accuracy points (as a fraction) an attack may cost a defense that held
NO_ATTACK_TOLERANCE = 0.05  # how far below mean's no-attack accuracy a defense is still judged
CHANCE_MARGIN = 0.05  # an accuracy ≤ the trivial baseline + this is "at chance"
BACKDOOR_THRESHOLD = 0.20
PSNR_THRESHOLD = 20.0  # dB: below it a reconstruction is not recognisable on 8×8 digits
AUC_THRESHOLD = 0.55
#: samples a malicious-server inversion may recover from a defense that held: none
RECOVERED_THRESHOLD = 0.0
CONFIDENCE = 0.95

HELD = "held"
FELL = "fell"
NOT_VULNERABLE = "not vulnerable"
VULNERABLE = "vulnerable"
FAILS_WITHOUT_ATTACK = "fails without attack"
DIVERGED = "diverged"
AT_CHANCE = "at chance"
JUDGED = (HELD, FELL, NOT_VULNERABLE, VULNERABLE)
OUTCOMES = (*JUDGED, FAILS_WITHOUT_ATTACK, DIVERGED, AT_CHANCE)


@dataclass(frozen=True)
class Verdict:
    defense: str
    attack: str
    setting: str
    outcome: str  # one of OUTCOMES
    measure: str  # what was bounded, in words ("" when nothing was)
    mean: float
    upper: float  # one-sided 95% upper confidence bound (the point value with one seed)
    seeds: int
    reason: str  # the numbers behind the outcome, in words

    @property
    def judged(self) -> bool:
        return self.outcome in JUDGED

    @property
    def baseline(self) -> bool:
        return self.defense == NO_DEFENSE

    def sentence(self) -> str:
        where = f" [{self.setting}]" if self.setting else ""
        who = f"{self.defense} (undefended baseline)" if self.baseline else self.defense
        return f"{who} × {self.attack}{where}: {self.outcome} — {self.reason}."


def chance_level(n_classes: int | None, majority: float | None = None) -> float:
    """The accuracy at or below which a model is "at chance": 5 points above the larger of
    1/classes and ``majority`` (the test set's most frequent class's share)."""
    trivial = max(1.0 / n_classes if n_classes else 0.0, majority or 0.0)
    return trivial + CHANCE_MARGIN


def setting_chance(tidy: pd.DataFrame, setting: str, n_classes: int | None = None) -> float:
    """:func:`chance_level` of one setting's cells (settings may differ in their data), from the
    ``n_classes`` and ``majority_share`` rows its cells recorded (largest over the cells)."""
    rows = tidy[tidy.setting == setting]
    majority = rows[rows.metric == "majority_share"]["value"].dropna()
    return chance_level(
        n_classes or matrix_classes(rows) or matrix_classes(tidy),
        float(majority.max()) if len(majority) else None,
    )


def upper_bound(values: np.ndarray, confidence: float = CONFIDENCE) -> float:
    """One-sided upper confidence bound of the mean (Student t); the value itself for one seed."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan
    if len(values) == 1:
        return float(values[0])
    sem = values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() + stdtrit(len(values) - 1, confidence) * sem)


def matrix_classes(tidy: pd.DataFrame) -> int | None:
    """Number of classes recorded by the cells (``n_classes`` rows of ``matrix.csv``)."""
    sel = tidy[tidy.metric == "n_classes"]["value"].dropna()
    return int(sel.max()) if len(sel) else None


def _bound_text(upper: float, seeds: int) -> str:
    return (
        f"upper 95% bound {upper:.3f} over {seeds} seeds" if seeds > 1 else "one seed, no interval"
    )


def _accuracy(tidy: pd.DataFrame, defense: str, attack: str, setting: str) -> np.ndarray:
    sel = tidy[
        (tidy.defense == defense)
        & (tidy.attack == attack)
        & (tidy.setting == setting)
        & (tidy.metric == "test_accuracy")
    ]
    return sel["value"].to_numpy(float)


def _average(values: np.ndarray) -> float:
    """Mean over seeds (NaN when there is none: every comparison with it is then false)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def _diverged(tidy: pd.DataFrame, defense: str, attack: str, setting: str) -> bool:
    sel = tidy[(tidy.defense == defense) & (tidy.attack == attack) & (tidy.setting == setting)]
    flagged = sel[(sel.metric == "diverged") & (sel.value.fillna(0) > 0)]
    acc = sel[sel.metric == "test_accuracy"]["value"]
    return bool((sel.status == DIVERGED).any() or len(flagged) or (len(acc) and acc.isna().any()))


def _values(group: pd.DataFrame, suffix: str) -> np.ndarray:
    return group[group.metric.str.endswith(suffix)]["value"].to_numpy(float)


def _judge(group: pd.DataFrame) -> tuple[str, float, float, int, bool, str]:
    """(measure, mean, upper, seeds, within threshold, note) of the attack's effect."""
    psnr, auc = _values(group, ".psnr_db"), _values(group, ".auc")
    recovered = _values(group, ".n_recovered")  # malicious-server inversion: exact samples
    if len(recovered) and not len(psnr):
        up = upper_bound(recovered)
        ok = up <= RECOVERED_THRESHOLD
        return "samples recovered", float(np.nanmean(recovered)), up, len(recovered), ok, ""
    if len(psnr):
        up = upper_bound(psnr)
        ok = up <= PSNR_THRESHOLD
        return "reconstruction PSNR (dB)", float(np.nanmean(psnr)), up, len(psnr), ok, ""
    if len(auc):
        up = upper_bound(auc)
        note = " (below 0.5: members scored as *less* likely members)" if up < 0.5 else ""
        return "membership AUC", float(np.nanmean(auc)), up, len(auc), up <= AUC_THRESHOLD, note
    drops = group[group.metric == "accuracy_drop"]["value"].to_numpy(float)
    up = upper_bound(drops)
    ok = up <= DROP_THRESHOLD
    note = ""
    bd = group[group.metric == "backdoor_success"]["value"].to_numpy(float)
    if len(bd):
        bd_up = upper_bound(bd)
        ok = ok and bd_up <= BACKDOOR_THRESHOLD
        note = f"; backdoor success {np.nanmean(bd):.0%} (bound {bd_up:.0%})"
    return "accuracy drop", float(np.nanmean(drops)), up, len(drops), ok, note


def verdicts(tidy: pd.DataFrame, n_classes: int | None = None) -> list[Verdict]:
    """One verdict per attacked (defense, attack, setting) of a tidy matrix frame (the layout of
    ``matrix.csv``), by the rule of the module docstring. Incompatible and failed cells get none:
    they are listed with their reason instead."""
    cells = tidy[tidy.attack != NO_ATTACK]
    chances = {s: setting_chance(tidy, s, n_classes) for s in cells.setting.unique()}
    out = []
    for (defense, attack, setting), group in cells.groupby(
        ["defense", "attack", "setting"], sort=True
    ):
        v = _verdict(tidy, Pair(defense, attack, setting), group, chances[setting])
        if v is not None:
            out.append(v)
    return out


@dataclass(frozen=True)
class Pair:
    defense: str
    attack: str
    setting: str

    def verdict(
        self,
        outcome: str,
        reason: str,
        measured: tuple[str, float, float, int] = ("", math.nan, math.nan, 0),
    ) -> Verdict:
        return Verdict(self.defense, self.attack, self.setting, outcome, *measured, reason)


def _verdict(tidy: pd.DataFrame, p: Pair, group: pd.DataFrame, chance: float) -> Verdict | None:
    done = group[group.status == "done"]
    if done.empty and not (group.status == DIVERGED).any():
        return None
    if _diverged(tidy, p.defense, p.attack, p.setting):
        return p.verdict(DIVERGED, "the attacked run diverged; no verdict")
    if _diverged(tidy, p.defense, NO_ATTACK, p.setting) or _diverged(
        tidy, NO_DEFENSE, NO_ATTACK, p.setting
    ):
        return p.verdict(DIVERGED, "a no-attack baseline diverged; no verdict")
    base_mean = _average(_accuracy(tidy, NO_DEFENSE, NO_ATTACK, p.setting))
    base_own = _average(_accuracy(tidy, p.defense, NO_ATTACK, p.setting))
    attacked = _average(_accuracy(tidy, p.defense, p.attack, p.setting))
    if base_mean <= chance:
        return p.verdict(
            AT_CHANCE,
            f"undefended accuracy without attack {base_mean:.3f} is at chance (≤ {chance:.3f}); "
            "no verdict",
        )
    if base_own <= chance:
        return p.verdict(
            AT_CHANCE,
            f"accuracy without attack {base_own:.3f} is at chance (≤ {chance:.3f}); no verdict",
        )
    if p.defense != NO_DEFENSE and base_own < base_mean - NO_ATTACK_TOLERANCE:
        return p.verdict(
            FAILS_WITHOUT_ATTACK,
            f"accuracy without attack {base_own:.3f} vs {base_mean:.3f} for the undefended mean "
            f"(more than {NO_ATTACK_TOLERANCE * 100:.0f} points below); not judged",
        )
    if attacked <= chance:
        return p.verdict(
            AT_CHANCE,
            f"accuracy under attack {attacked:.3f} is at chance (≤ {chance:.3f}): the model no "
            "longer learns; no held/fell verdict",
        )
    measure, mean, upper, seeds, ok, note = _judge(done)
    if seeds == 0 or not math.isfinite(upper):
        return None
    if p.defense == NO_DEFENSE:
        outcome = NOT_VULNERABLE if ok else VULNERABLE
    else:
        outcome = HELD if ok else FELL
    reason = f"{measure} {mean:.3f} ({_bound_text(upper, seeds)}){note}"
    return p.verdict(outcome, reason, (measure, mean, upper, seeds))


def rule_text(tidy: pd.DataFrame) -> str:
    """The rule in one paragraph, naming only the thresholds that apply to this matrix's metrics."""
    metrics = set(tidy["metric"])
    privacy_judged = {
        a
        for a, m in zip(tidy["attack"], tidy["metric"], strict=True)
        if m.endswith((".psnr_db", ".auc", ".n_recovered"))
    }
    accuracy_judged = set(tidy["attack"]) - privacy_judged - {NO_ATTACK}
    bounds = []
    if "accuracy_drop" in metrics and accuracy_judged:
        bounds.append(
            f"the accuracy drop it suffered (its accuracy without the attack minus with it, paired "
            f"by seed) is at most {DROP_THRESHOLD * 100:.0f} points"
        )
    if "backdoor_success" in metrics:
        bounds.append(f"the backdoor success rate is at most {BACKDOOR_THRESHOLD:.0%}")
    if any(m.endswith(".psnr_db") for m in metrics):
        bounds.append(
            f"the reconstruction PSNR is at most {PSNR_THRESHOLD:g} dB (gradient inversion)"
        )
    if any(m.endswith(".auc") for m in metrics):
        bounds.append(f"the membership-inference AUC is at most {AUC_THRESHOLD:g}")
    if any(m.endswith(".n_recovered") for m in metrics):
        bounds.append(
            f"the number of training samples recovered is at most {RECOVERED_THRESHOLD:g} "
            "(malicious-server inversion; a sample is recovered at PSNR ≥ 30 dB and 3 dB over "
            "its class mean)"
        )
    return (
        "Rule: a defense held when the one-sided 95% upper confidence bound over seeds "
        f"(Student t) of {'; '.join(bounds) or 'the attack metric'}. "
        f"It is judged only where its accuracy without attack is within "
        f"{NO_ATTACK_TOLERANCE * 100:.0f} points of the undefended mean's (else: fails without "
        "attack). The mean row is the undefended baseline: vulnerable or not vulnerable by the same "
        "bound. No verdict for a run that diverged or sits at chance (≤ 5 points above the "
        "larger of 1/classes and the test set's most frequent class's share)."
    )


def verdict_grid(vs: Iterable[Verdict]) -> pd.DataFrame:
    """Outcome per defense (rows, ``mean`` first) and attack (columns)."""
    vs = list(vs)
    if not vs:
        return pd.DataFrame()
    frame = pd.DataFrame(
        [
            {
                "row": f"{v.defense} [{v.setting}]" if v.setting else v.defense,
                "attack": v.attack,
                "outcome": v.outcome,
            }
            for v in vs
        ]
    )
    grid = frame.pivot(index="row", columns="attack", values="outcome")
    rows = sorted(grid.index, key=lambda r: (r.split(" [")[0] != NO_DEFENSE, r))
    return grid.loc[rows].fillna("—")


def answer(vs: Iterable[Verdict]) -> list[str]:
    """The answer in a few sentences, most important first: which defenses held against every
    attack they were judged on, which fell and to what, what fails without attack, and the
    undefended baseline."""
    vs = list(vs)
    if not vs:
        return ["No attacked cell finished: nothing to judge."]
    lines: list[str] = []
    defenses = sorted({v.defense for v in vs if not v.baseline})
    held_all, partial, failing, unjudged = [], [], [], []
    for d in defenses:
        mine = [v for v in vs if v.defense == d]
        judged = [v for v in mine if v.judged]
        fell = [v.attack for v in judged if v.outcome == FELL]
        if any(v.outcome == FAILS_WITHOUT_ATTACK for v in mine):
            failing.append(d)
        elif not judged:
            unjudged.append(d)
        elif not fell:
            held_all.append(f"{d} ({len(judged)}/{len(judged)})")
        else:
            partial.append(
                f"{d} fell to {', '.join(fell)} (held {len(judged) - len(fell)}/{len(judged)})"
            )
    judged_pairs = [v for v in vs if v.judged and not v.baseline]
    held = sum(v.outcome == HELD for v in judged_pairs)
    # defense pairs only, as judged_pairs: the baseline's own outcomes have their own line
    unjudged_pairs = sum(not v.judged for v in vs if not v.baseline)
    lines.append(
        f"{held} of {len(judged_pairs)} judged defense × attack pairs held"
        + (f" ({unjudged_pairs} without a verdict)" if unjudged_pairs else "")
        + "."
    )
    if held_all:
        lines.append("Held against every attack judged: " + ", ".join(held_all) + ".")
    if partial:
        lines.append("Fell: " + "; ".join(partial) + ".")
    if failing:
        lines.append(
            "Fails without attack (more than 5 points below the undefended mean, not judged): "
            + ", ".join(failing)
            + "."
        )
    if unjudged:
        lines.append("No verdict (diverged or at chance): " + ", ".join(unjudged) + ".")
    base = [v for v in vs if v.baseline]
    if base:
        vulnerable = [v.attack for v in base if v.outcome == VULNERABLE]
        chance = [v.attack for v in base if v.outcome == AT_CHANCE]
        safe = [v.attack for v in base if v.outcome == NOT_VULNERABLE]
        parts = []
        if vulnerable:
            parts.append("vulnerable to " + ", ".join(vulnerable))
        if chance:
            parts.append("at chance under " + ", ".join(chance))
        if safe:
            parts.append("not vulnerable to " + ", ".join(safe))
        lines.append("Undefended baseline (mean): " + "; ".join(parts) + ".")
    return lines


def verdict_frame(vs: Iterable[Verdict]) -> pd.DataFrame:
    """The ``verdicts.csv`` layout: one row per (defense, attack, setting)."""
    return pd.DataFrame(
        [asdict(v) for v in vs],
        columns=[
            "defense",
            "attack",
            "setting",
            "outcome",
            "measure",
            "mean",
            "upper",
            "seeds",
            "reason",
        ],
    )
