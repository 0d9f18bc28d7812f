"""The DP-SGD trainer keeps freed memory in the heap (glibc): a freed multi-megabyte tensor's
pages are reused without page faults. Run in a subprocess: the setting is process-wide."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_PROBE = """
import resource, sys, torch
from fedguard.core import local_training
from fedguard.core.local_training import ClientData, DPSGDConfig, LocalTrainingConfig
from fedguard.models.cnn import CNN
from fedguard.models.flat import FlatModel

torch.set_num_threads(1)
if sys.argv[1] == "off":
    local_training.retain_freed_memory = lambda: False
model = FlatModel.of(CNN(channels=(8, 16)).build((1, 8, 8), 10))
g = torch.Generator().manual_seed(0)
data = ClientData.pad(
    [torch.randn(128, 1, 8, 8, generator=g) for _ in range(10)],
    [torch.randint(0, 10, (128,), generator=g) for _ in range(10)],
)
cfg, dp = LocalTrainingConfig(batch_size=64), DPSGDConfig(1.0, 1.0)
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    local_training.train_dp_sgd(model, model.initial_params(), data, list(range(10)), cfg, dp, 0, 0)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[2:]))
"""


def _faults_per_round(mode: str) -> int:
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    return int(run.stdout.split()[-1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the setting exists in glibc only (elsewhere retain_freed_memory returns False)",
)
def test_dp_rounds_stop_page_faulting_their_temporaries() -> None:
    """A DP-SGD round of the CNN (10 clients) after two warm-up rounds: glibc's defaults hand
    its temporaries back to the OS and fault them in again (about 4,000 pages a round
    measured); with the memory kept, (almost) none."""
    default, retained = _faults_per_round("off"), _faults_per_round("on")
    assert default > 500
    assert retained < default / 10


def test_the_dp_trainer_sets_it_on_a_cpu(monkeypatch) -> None:
    import torch

    from fedguard.core import local_training
    from fedguard.core.local_training import ClientData, DPSGDConfig, LocalTrainingConfig
    from fedguard.models.flat import FlatModel

    calls = []
    monkeypatch.setattr(local_training, "retain_freed_memory", lambda: calls.append(1))
    model = FlatModel.of(torch.nn.Sequential(torch.nn.Linear(3, 2)))
    data = ClientData.pad([torch.zeros(4, 3)], [torch.zeros(4, dtype=torch.long)])
    cfg = LocalTrainingConfig(batch_size=2)
    local_training.train_dp_sgd(
        model, model.initial_params(), data, [0], cfg, DPSGDConfig(1.0, 1.0), 0, 0
    )
    assert calls == [1]


def test_the_vectorized_trainer_sets_it_on_a_cpu(monkeypatch) -> None:
    import torch

    from fedguard.core import local_training
    from fedguard.core.local_training import ClientData, LocalTrainingConfig
    from fedguard.models.flat import FlatModel

    calls = []
    monkeypatch.setattr(local_training, "retain_freed_memory", lambda: calls.append(1))
    model = FlatModel.of(torch.nn.Sequential(torch.nn.Linear(3, 2)))
    data = ClientData.pad([torch.zeros(4, 3)], [torch.zeros(4, dtype=torch.long)])
    local_training.train_vectorized(
        model, model.initial_params(), data, [0], LocalTrainingConfig(batch_size=2), 0, 0
    )
    assert calls == [1]
