"""Faults: how fedguard's evidence holds up under damage and hostile input (issue 14).

    python benchmarks/bench_faults.py [--only kills,corruption,hostile]

A thin driver: each section is a module under ``benchmarks/faults/`` with
``section(workdir) -> dict`` (or ``run() -> dict``) and is listed in SECTIONS (add yours there). Every section prints
what it tried and how many cases were handled as required.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: (name, module): each module has ``section(workdir: Path) -> dict`` (or ``run() -> dict``).
SECTIONS = [
    ("kills", "benchmarks.faults.kills"),
    ("corruption", "benchmarks.faults.corruption"),
    ("hostile", "benchmarks.faults.hostile"),
    ("forgery", "benchmarks.faults.forgery"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default="", help="comma-separated section names")
    args = ap.parse_args()
    torch.set_num_threads(1)
    wanted = {s for s in args.only.split(",") if s}
    for name, module in SECTIONS:
        if wanted and name not in wanted:
            continue
        started = time.perf_counter()
        loaded = importlib.import_module(module)
        with tempfile.TemporaryDirectory() as tmp:
            result = loaded.section(Path(tmp)) if hasattr(loaded, "section") else loaded.run()
        print(f"== {name} ({time.perf_counter() - started:.0f} s)")
        for key, value in result.items():
            if key == "failures":
                for failure in value:
                    print(f"   FAILED: {failure}")
            else:
                print(f"   {key}: {value}")


if __name__ == "__main__":
    main()
