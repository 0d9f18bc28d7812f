"""Where fetched datasets live: ``$FEDGUARD_DATA``, else the user's cache directory.

A dataset directory appears in the cache only once its archive is complete, verified and extracted
(extraction goes to a temporary sibling that is renamed into place), so a directory that exists is
a dataset that can be trusted; partial downloads wait in ``.downloads/`` to be resumed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fedguard.errors import ConfigError

ENV_VAR = "FEDGUARD_DATA"


def data_root() -> Path:
    """The cache directory (not created here)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fedguard" / "data"


def downloads_dir(root: Path) -> Path:
    return root / ".downloads"


def dataset_dir(name: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """The directory of fetched dataset ``name`` (``directory`` overrides the cache root); one
    sentence naming the fetch command if it is not there (run-time code never downloads)."""
    root = Path(directory).expanduser() if directory else data_root()
    path = root / name
    if not path.is_dir():
        where = f" --dir {root}" if directory else ""
        raise ConfigError(
            f"dataset {name!r} is not in {root}; fetch it first with "
            f"`fedguard data fetch {name}{where}` (or set {ENV_VAR} to where it is)."
        )
    return path
