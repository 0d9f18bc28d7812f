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
