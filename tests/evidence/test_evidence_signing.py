"""Ed25519 signatures: keys outside the run folder, a manifest of SHA-256s, checked by every
command that reads the run."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from fedguard.audit.signing import check_signature, generate_key


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_owner_only_and_never_silently_replaced(key_dir: Path, cli) -> None:
    code, _, err = cli("keys", "generate")
    assert code == 0, err
    assert _mode(key_dir) == 0o700 and _mode(key_dir / "signing_key.pem") == 0o600
    before = (key_dir / "signing_key.pem").read_bytes()
    code, _, err = cli("keys", "generate")
    assert code == 2 and "already holds a signing key; pass --force" in err
    assert (key_dir / "signing_key.pem").read_bytes() == before
    code, _, err = cli("keys", "generate", "--force")
    assert code == 0, err
    assert (key_dir / "signing_key.pem").read_bytes() != before


def test_signed_run_reports_a_valid_signature(run_copy: Path, key_dir: Path, cli) -> None:
    cli("keys", "generate")
    code, out, err = cli("sign", str(run_copy))
    assert code == 0, err
    assert not any(p.name.endswith(".pem") for p in run_copy.rglob("*"))  # key stays outside
    code, out, err = cli("audit", str(run_copy))
    assert code == 0, err
    assert "· signature valid (key " in out.splitlines()[0] and ", your key)" in out.splitlines()[0]
    assert (run_copy / "privacy_epsilon.png").is_file()  # audit wrote its plot
    (run_copy / "report.html").write_text("<html></html>")  # as `fedguard report` would
    # outputs of read-only commands are not part of what is signed
    assert check_signature(run_copy).state == "valid"


def test_signature_over_a_modified_file_fails(run_copy: Path, key_dir: Path, cli) -> None:
    cli("keys", "generate")
    cli("sign", str(run_copy))
    with (run_copy / "rounds.jsonl").open("a") as fh:
        fh.write("\n")
    for command in ("audit", "show", "report"):
        code, _, err = cli(command, str(run_copy))
        assert code == 2
        assert "rounds.jsonl was modified after the run was signed" in err
    code, out, _ = cli("verify", str(run_copy))
    assert "signature INVALID" in out.splitlines()[0]


def test_an_added_file_or_an_edited_manifest_fails(run_copy: Path, key_dir: Path, cli) -> None:
    cli("keys", "generate")
    cli("sign", str(run_copy))
    (run_copy / "extra.json").write_text("{}")
    assert "extra.json was added after the run was signed" in check_signature(run_copy).detail
    (run_copy / "extra.json").unlink()
    doc = json.loads((run_copy / "signature.json").read_text())
    doc["files"]["spec.yaml"] = "0" * 64  # a manifest edited to match a changed file
    (run_copy / "signature.json").write_text(json.dumps(doc))
    status = check_signature(run_copy)
    assert status.state == "invalid" and "does not match its manifest" in status.detail


def test_another_users_signature_is_valid_but_not_yours(
    run_copy: Path, tmp_path: Path, key_dir: Path, cli, monkeypatch
) -> None:
    generate_key(tmp_path / "someone_else")
    monkeypatch.setenv("FEDGUARD_KEY_DIR", str(tmp_path / "someone_else"))
    assert cli("sign", str(run_copy))[0] == 0
    monkeypatch.setenv("FEDGUARD_KEY_DIR", str(key_dir))
    cli("keys", "generate")
    status = check_signature(run_copy)
    assert status.state == "valid" and not status.own_key
    assert "your key" not in status.line()


def test_a_private_key_readable_by_others_is_refused(run_copy: Path, key_dir: Path, cli) -> None:
    cli("keys", "generate")
    os.chmod(key_dir / "signing_key.pem", 0o644)
    code, _, err = cli("sign", str(run_copy))
    assert code == 2 and "readable by other users" in err
    assert not (run_copy / "signature.json").exists()
