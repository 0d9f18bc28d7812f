"""Files a report embeds, resolved strictly inside the run or matrix folder.

A run folder may come from someone else. Its ``complete.json`` names artifacts by relative path
and its database names metrics; a ``..``, an absolute path or a symlink out of the folder would
embed (base64) a file of the reader's — an SSH key, a token — into a report they then share.
Anything that does not stay inside the folder is refused with one sentence.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fedguard.errors import UserError


def inside(root: Path, relative: str | Path, what: str = "artifact") -> Path:
    """``root / relative`` after checking that it stays inside ``root``.

    Refused: an absolute path, a ``..`` component, and a path any of whose components is a
    symbolic link (even one pointing back inside: a folder's meaning must not depend on where
    its links happen to point on the reader's machine). A missing file is returned as is; the
    caller decides whether absence is an error.
    """
    rel = PurePosixPath(str(relative).replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise UserError(
            f"{what} path {str(relative)!r} in {root} is not a plain path inside the folder "
            "(no absolute paths, no '..'); the folder was edited or is not fedguard's output."
        )
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise UserError(
                f"{what} {str(relative)!r} in {root} is a symbolic link; a report embeds only "
                "files inside the folder, so it is refused."
            )
    resolved = current.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise UserError(f"{what} {str(relative)!r} resolves outside {root}; it is refused.")
    return current


def checked_png(path: Path) -> Path:
    """An artifact image that decodes in full (a truncated or replaced file is refused rather
    than embedded as a broken picture)."""
    from PIL import Image

    if not path.is_file():
        raise UserError(f"artifact {path} listed in complete.json is missing.")
    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                raise ValueError(f"a {img.format} file, not PNG")
            img.load()
    except Exception as exc:  # PIL raises many types for damaged files
        raise UserError(f"artifact {path} is not a readable PNG image ({exc}).") from None
    return path


def checked_roc(path: Path) -> tuple[list[float], list[float]]:
    """An ROC curve artifact: two equally long lists of rates in [0, 1]."""
    import json
    import math

    if not path.is_file():
        raise UserError(f"artifact {path} listed in complete.json is missing.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fpr, tpr = [float(v) for v in data["fpr"]], [float(v) for v in data["tpr"]]
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"artifact {path} is not an ROC curve ({type(exc).__name__}).") from None
    ok = len(fpr) == len(tpr) > 0 and all(math.isfinite(v) and 0 <= v <= 1 for v in (*fpr, *tpr))
    if not ok:
        raise UserError(f"artifact {path} is not an ROC curve (rates must lie in [0, 1]).")
    return fpr, tpr
