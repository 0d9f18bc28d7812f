"""``fedguard verify RUN [--rounds K] [--seed S] [--json]``: replay a run and compare bit for bit.

Exit status: 0 when everything compared matched, 1 when anything differed (the folder is not what
its spec produces), 2 for a usage error or a folder that cannot be read (a broken seal, an
unreadable file, a run that cannot be replayed: ``privacy.secure_rng``).
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from fedguard.errors import UserError
from fedguard.storage.run_dir import RunDirectory

DIFFERED = 1


def verify_command(run: Path, rounds: int | None, seed: int, as_json: bool) -> int:
    """Print what matched; the exit status (0 matched, 1 differed)."""
    from fedguard.audit.evidence import gather_evidence
    from fedguard.audit.replay import replay

    run_dir = RunDirectory(run)
    if not run_dir.exists():
        raise UserError(f"{run} is not a fedguard run directory (no spec.yaml).")
    # cross-checks and signature are reported, not enforced: the replay decides
    evidence = gather_evidence(run_dir, strict=False)
    console = Console(stderr=as_json)
    try:
        result = replay(run_dir, rounds, seed)
    except KeyboardInterrupt:  # the replay writes nothing: there is nothing to resume
        Console(stderr=True).print("verify interrupted; nothing was written.")
        raise SystemExit(130) from None
    evidence = type(evidence)(evidence.seal, evidence.cross_checks, evidence.signature, result)
    if as_json:
        print(json.dumps(evidence.to_dict(), default=str))
        return 0 if result.matched else DIFFERED
    console.print(evidence.line(), highlight=False, soft_wrap=True)
    drawn = result.rounds_drawn
    if rounds is not None:
        console.print(
            f"rounds drawn (seed {seed}): {', '.join(map(str, drawn))}; the run keeps no "
            f"per-round states, so rounds 1–{result.rounds_replayed} were replayed and compared.",
            highlight=False,
            soft_wrap=True,
        )
    for c in result.comparisons:
        line = c.detail if not c.compared else ("matched — " if c.matched else "DIFFERED — ")
        line += c.detail if c.compared else ""
        console.print(f"  {c.what}: {line}", highlight=False, soft_wrap=True)
    for check in evidence.cross_checks.failures:
        console.print(
            f"  cross-check {check.name}: FAILED — {check.detail}", highlight=False, soft_wrap=True
        )
    if evidence.signature.state == "invalid":
        console.print(
            f"  signature: INVALID — {evidence.signature.detail}", highlight=False, soft_wrap=True
        )
    return 0 if result.matched else DIFFERED
