"""``fedguard --threads`` without importing torch (a command that never trains does not pay for
it), yet torch gets exactly that many threads once something imports it."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.strip()


def test_threads_are_set_when_torch_is_imported_later() -> None:
    """3 threads on a machine of any size: ``OMP_NUM_THREADS`` would be capped at its cores,
    ``torch.set_num_threads`` is not."""
    out = _python(
        "import sys\n"
        "from fedguard.threads import configure_threads\n"
        "configure_threads(3)\n"
        "before = 'torch' in sys.modules\n"
        "import torch\n"
        "print(before, torch.get_num_threads())\n"
    )
    assert out == "False 3"


def test_the_last_setting_wins_and_an_imported_torch_is_set_at_once() -> None:
    out = _python(
        "from fedguard.threads import configure_threads\n"
        "configure_threads(3)\n"
        "configure_threads(2)\n"
        "import torch\n"
        "first = torch.get_num_threads()\n"
        "configure_threads(1)\n"
        "print(first, torch.get_num_threads())\n"
    )
    assert out == "2 1"


def test_calibrate_never_imports_torch() -> None:
    out = _python(
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from fedguard.cli.main import app\n"
        "args = ['calibrate', '--target-epsilon', '1', '--delta', '1e-5',\n"
        "        '--sampling-rate', '0.01', '--steps', '100', '--accountant', 'rdp']\n"
        "result = CliRunner().invoke(app, args)\n"
        "print(result.exit_code, 'torch' in sys.modules)\n"
    )
    assert out == "0 False"
