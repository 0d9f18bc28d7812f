"""``fedguard keys generate`` and ``fedguard sign RUN``: Ed25519 attribution of a run folder."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console


def keys_generate_command(force: bool) -> None:
    from fedguard.audit.signing import generate_key

    path, print_ = generate_key(force=force)
    Console().print(
        f"signing key: {path} (owner-only); public key fingerprint {print_} — publish it so "
        "readers can tell your signed runs.",
        highlight=False,
    )


def sign_command(run: Path) -> None:
    from fedguard.audit.evidence import gather_evidence
    from fedguard.audit.signing import sign_run
    from fedguard.storage.run_dir import RunDirectory

    # never sign a folder whose ledger contradicts its spec or records
    gather_evidence(RunDirectory(run), strict=False).cross_checks.raise_for_failure()
    target, print_, n = sign_run(run)
    Console().print(
        f"signed {n} files of {run} with key {print_}: {target}. A signature attributes the run; "
        "it proves nothing about its honesty (fedguard verify does).",
        highlight=False,
    )
