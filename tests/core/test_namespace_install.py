"""The bundled plugins install under the project's namespace (``fedguard.attacks``,
``fedguard.defenses``), so fedguard installs beside a distribution that ships top-level
``attacks`` / ``defenses`` packages without either shadowing the other.

The check builds fedguard from a copy of its sources into a fresh virtual environment next to
such a distribution, without network: ``--no-build-isolation`` with this interpreter's
setuptools, ``--no-deps`` with this interpreter's packages (torch, …) visible through a ``.pth``
file that lists its site-packages after the new environment's own.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

OTHER_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "someone-elses-attacks"
version = "1.0"

[tool.setuptools]
packages = ["attacks", "defenses"]
"""

CHECK = """\
import attacks, defenses
assert attacks.ORIGIN == defenses.ORIGIN == "someone else", "the other distribution is shadowed"
import fedguard.attacks.inversion.grid as grid
import fedguard.defenses.robust.krum as krum
assert "site-packages" in grid.__file__ and "site-packages" in krum.__file__, grid.__file__
from fedguard import registry
assert type(registry.build("aggregator", "krum", {}, "x", n_byzantine=1)).__module__ == (
    "fedguard.defenses.robust.krum"
)
assert registry.names("privacy_attack"), "no privacy attack registered"
print("ok")
"""


def _pip(python: Path, *args: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *args],
        check=True,
        capture_output=True,
        text=True,
    )


def test_installs_beside_a_distribution_with_top_level_attacks_and_defenses(
    tmp_path: Path,
) -> None:
    other = tmp_path / "other"
    for package in ("attacks", "defenses"):
        (other / package).mkdir(parents=True)
        (other / package / "__init__.py").write_text('ORIGIN = "someone else"\n')
    (other / "pyproject.toml").write_text(OTHER_PYPROJECT)
    source = tmp_path / "fedguard-src"  # a copy: building in place would write into the checkout
    for name in ("fedguard", "attacks", "defenses"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    own = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parents = [p for p in (*site.getsitepackages(), site.getusersitepackages()) if Path(p).is_dir()]
    (Path(own) / "parent_packages.pth").write_text("\n".join(parents) + "\n")
    _pip(python, str(other))
    _pip(python, str(source))
    out = subprocess.run(
        [str(python), "-c", CHECK], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
