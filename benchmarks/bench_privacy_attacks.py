"""Privacy-attack benchmark on digits (8×8, pixels in [0, 1]) with an MLP 64-32-10.

1. Gradient inversion: seconds per reconstruction and PSNR for each attack, on FedSGD gradients
   (batch 1 and 4) and on FedAvg updates (20 and 50 local full-batch steps), untrained model.
   Ratios: time against the first attack of the row, PSNR of SME against inverting gradients;
   then SME vs inverting gradients with the true labels given to both kernels.
2. Shadow-model training for LiRA with 16 and 64 shadows: vectorized (torch.func.vmap over stacked
   parameters) against one-by-one training of the same models on the same batches.
3. Membership inference pooled over 4 target models trained on 100 digits each: AUC and TPR at
   1% FPR (the last ROC point with FPR strictly below 1%, as the LiRA reference; when members and
   non-members tie at the threshold, the TPR if the tie were broken for the members) of the loss
   attack, LiRA and RMIA.

Run: ``PYTHONPATH=$PWD python benchmarks/bench_privacy_attacks.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from text_table import print_table  # sibling module: the scripts run from benchmarks/

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "privattacks"))

from pa_util import digits, digits_task, mlp, single_client_view  # noqa: E402

from fedguard.attacks.inversion._common import ParamLayout  # noqa: E402
from fedguard.attacks.inversion.analytic import AnalyticInversion  # noqa: E402
from fedguard.attacks.inversion.dlg import DLG  # noqa: E402
from fedguard.attacks.inversion.inverting_gradients import InvertingGradients, invert_gradient  # noqa: E402
from fedguard.attacks.inversion.label_recovery import LabelRecovery  # noqa: E402
from fedguard.attacks.inversion.sme import SME, sme_reconstruct  # noqa: E402
from fedguard.attacks.membership._common import MembershipTask, membership_metrics  # noqa: E402
from fedguard.attacks.membership._shadow import (  # noqa: E402
    TrainingRecipe,
    draw_batches,
    init_stacked,
    member_indices,
    random_subsets,
    train_sequential,
    train_stacked,
)
from fedguard.attacks.membership.lira import LiRA  # noqa: E402
from fedguard.attacks.membership.loss_threshold import LossThreshold  # noqa: E402
from fedguard.attacks.membership.rmia import RMIA  # noqa: E402
from fedguard.metrics.privacy_attack_metrics import hungarian_match, psnr_per_sample  # noqa: E402
from fedguard.types import ServerView, Truth  # noqa: E402

N_IMAGES = 3  # reconstructions averaged per cell


def bench_inversion() -> None:
    x, y = digits()
    attacks: dict[str, Any] = {
        "analytic": AnalyticInversion(),
        "label_recovery": LabelRecovery(),
        "dlg": DLG(iterations=300),
        "inverting_gradients": InvertingGradients(iterations=1000),
        "sme": SME(iterations=1000),
    }
    settings = [
        ("FedSGD, batch 1", 1, 0.1, 1),
        ("FedSGD, batch 4", 4, 0.1, 1),
        ("FedAvg 20 steps lr 0.1, 4 samples", 4, 0.1, 20),
        ("FedAvg 50 steps lr 0.2, 4 samples", 4, 0.2, 50),
    ]
    rows: list[list[Any]] = []
    for label, batch, lr, steps in settings:
        base_seconds = None
        psnr_by_attack: dict[str, float] = {}
        for name, attack in attacks.items():
            if steps > 1 and name in ("analytic", "label_recovery", "dlg"):
                continue
            seconds, psnr, labels = 0.0, 0.0, 0.0
            for i in range(N_IMAGES):
                model = mlp(i)
                xb, yb = x[30 * i : 30 * i + batch], y[30 * i : 30 * i + batch]
                view = single_client_view(model, xb, yb, lr=lr, steps=steps)
                truth = Truth(malicious_ids=(), private_batches={3: (xb, yb)})
                t0 = time.perf_counter()
                out = attack.observe(view, digits_task(model))
                seconds += time.perf_counter() - t0
                m = attack.metrics(out, truth)
                psnr += m.get("psnr_db", float("nan"))
                labels += m["label_accuracy"]
            seconds /= N_IMAGES
            psnr /= N_IMAGES
            psnr_by_attack[name] = psnr
            base_seconds = base_seconds or seconds
            rows.append(
                [
                    label,
                    name,
                    f"{seconds:.3f}",
                    f"{seconds / base_seconds:.1f}x",
                    "-" if name == "label_recovery" else f"{psnr:.1f}",
                    f"{labels / N_IMAGES:.2f}",
                ]
            )
        if "sme" in psnr_by_attack:
            gain = psnr_by_attack["sme"] - psnr_by_attack["inverting_gradients"]
            rows.append([label, "SME − IG (dB)", "", "", f"{gain:+.1f}", ""])
    print_table(
        f"Gradient inversion (mean of {N_IMAGES} reconstructions; ratio vs first attack of the row)",
        ["setting", "attack", "s/recon", "ratio", "PSNR dB", "label acc"],
        rows,
    )


def bench_sme_true_labels() -> None:
    """SME against inverting gradients with the true labels given to both kernels, isolating
    the surrogate's effect from label-recovery errors (duplicated labels are ambiguous after
    several local steps)."""
    x, y = digits()
    rows = []
    for lr, steps in ((0.1, 20), (0.5, 20), (0.2, 50)):
        gains, ig_db, sme_db = [], [], []
        for i in range(N_IMAGES):
            model = mlp(i)
            xb, yb = x[30 * i : 30 * i + 4], y[30 * i : 30 * i + 4]
            view = single_client_view(model, xb, yb, lr=lr, steps=steps)
            assert view.updates is not None
            layout = ParamLayout.from_module(model)
            common: dict[str, Any] = {
                "input_shape": (64,),
                "data_range": (0.0, 1.0),
                "image_shape": (1, 8, 8),
                "iterations": 1000,
                "step_size": 0.1,
                "tv_weight": 1e-4,
                "restarts": 1,
            }
            x_ig, _ = invert_gradient(
                model,
                layout,
                view.global_params,
                -view.updates[0],
                yb,
                generator=torch.Generator().manual_seed(i),
                **common,
            )
            x_sme, _, _ = sme_reconstruct(
                model,
                layout,
                view.global_params,
                view.updates[0],
                yb,
                alpha_step_size=0.01,
                alpha_init=0.5,
                generator=torch.Generator().manual_seed(i),
                **common,
            )
            rows_ig, cols_ig = hungarian_match(x_ig, xb)
            rows_sme, cols_sme = hungarian_match(x_sme, xb)
            ig = float(psnr_per_sample(x_ig[rows_ig], xb[cols_ig]).mean())
            sm = float(psnr_per_sample(x_sme[rows_sme], xb[cols_sme]).mean())
            ig_db.append(ig)
            sme_db.append(sm)
            gains.append(sm - ig)
        rows.append(
            [
                f"lr {lr}, {steps} steps",
                f"{sum(ig_db) / N_IMAGES:.1f}",
                f"{sum(sme_db) / N_IMAGES:.1f}",
                f"{sum(gains) / N_IMAGES:+.1f}",
                f"{min(gains):+.1f}",
            ]
        )
    print_table(
        "FedAvg update, 4 samples, true labels, 1000 iterations: SME vs inverting gradients",
        ["local training", "IG dB", "SME dB", "mean gain", "min gain"],
        rows,
    )


def bench_shadows() -> None:
    x, y = digits()
    model = mlp(0)
    layout = ParamLayout.from_module(model)
    recipe = TrainingRecipe(steps=100, batch_size=50, lr=0.2, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    warm = random_subsets(2, 400, gen, 100)
    wb = draw_batches(member_indices(warm), TrainingRecipe(steps=2, batch_size=50, lr=0.1), gen)
    train_stacked(model, init_stacked(layout, 2, gen), x[:400], y[:400], wb, recipe)  # warm-up
    rows = []
    for n_shadows in (16, 64):
        mask = random_subsets(n_shadows, 400, gen, 100)
        batches = draw_batches(member_indices(mask), recipe, gen)
        init = init_stacked(layout, n_shadows, gen)
        t0 = time.perf_counter()
        fast = train_stacked(model, init, x[:400], y[:400], batches, recipe)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        slow = train_sequential(model, init, x[:400], y[:400], batches, recipe)
        t_slow = time.perf_counter() - t0
        err = float((fast - slow).abs().max())
        rows.append(
            [n_shadows, f"{t_slow:.2f}", f"{t_fast:.2f}", f"{t_slow / t_fast:.1f}x", f"{err:.1e}"]
        )
    print_table(
        "LiRA shadow training (MLP 64-32-10, 100 samples each, 100 SGD steps of 50)",
        ["shadows", "one-by-one s", "vectorized s", "speed-up", "max |Δθ|"],
        rows,
    )


def bench_membership() -> None:
    x, y = digits()
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(x.shape[0], generator=gen)
    xc, yc = x[perm[:200]], y[perm[:200]]
    xp, yp = x[perm[200:400]], y[perm[200:400]]
    model = mlp(0)
    layout = ParamLayout.from_module(model)
    recipe = TrainingRecipe(steps=300, batch_size=32, lr=0.1, momentum=0.9)
    n_targets = 4
    mask = random_subsets(n_targets, 200, gen, 100)
    batches = draw_batches(member_indices(mask), recipe, gen)
    targets = train_stacked(model, init_stacked(layout, n_targets, gen), xc, yc, batches, recipe)
    attacks: dict[str, Any] = {
        "loss_threshold": LossThreshold(),
        "lira online (64)": LiRA(n_shadows=64),
        "lira offline (64)": LiRA(n_shadows=64, online=False),
        "rmia offline (16)": RMIA(n_references=16),
    }
    rows = []
    base_tpr = None
    for name, attack in attacks.items():
        scores, labels = [], []
        t0 = time.perf_counter()
        for t in range(n_targets):
            task = MembershipTask(model, (xc, yc), (xp, yp), recipe, targets[t], train_size=100)
            view = ServerView(t, targets[t], (), None, torch.zeros_like(targets[t]), ())
            scores.append(attack.observe(view, task).scores)
            labels.append(mask[t])
        seconds = (time.perf_counter() - t0) / n_targets
        m = membership_metrics(torch.cat(scores), torch.cat(labels))
        tpr = m["tpr_at_1pct_fpr"]
        base_tpr = base_tpr if base_tpr is not None else tpr
        rows.append(
            [
                name,
                f"{seconds:.2f}",
                f"{m['auc']:.3f}",
                f"{tpr:.3f} [{m['tpr_at_1pct_fpr_lower']:.3f}, {m['tpr_at_1pct_fpr_upper']:.3f}]",
                f"{m['tpr_at_1pct_fpr_if_ties_broken']:.3f}"
                if m["tpr_at_1pct_fpr_tied"]
                else "no tie",
                f"{tpr / max(base_tpr, 1e-12):.1f}x",
            ]
        )
    print_table(
        "Membership inference, 4 targets × 200 candidates pooled (400 members / 400 non-members)",
        ["attack", "s/target", "AUC", "TPR@1%FPR [95% CI]", "tie at threshold", "vs loss"],
        rows,
    )


def main() -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    bench_inversion()
    bench_sme_true_labels()
    bench_shadows()
    bench_membership()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
