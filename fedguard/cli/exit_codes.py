"""Exit statuses of the ``fedguard`` command and the translation of click's usage errors.

0: success. 1: the command ran but its outcome is a failure (a diverged run, a failed check).
2: a usage error or bad input (one sentence, no traceback, nothing written).
130: interrupted by Ctrl-C (128 + SIGINT), with how to resume.

typer vendors its own copy of click (``typer._click``) in some versions and uses the installed
``click`` in others, so usage errors are recognised by their class names, not their module.
"""

from __future__ import annotations

from typing import Any

from fedguard.safe_text import one_line

SUCCESS = 0
FAILED = 1
USAGE = 2
INTERRUPTED = 130

__all__ = ["FAILED", "INTERRUPTED", "SUCCESS", "USAGE", "click_usage_message", "one_line"]


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def click_usage_message(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit status) for a click/typer usage error or abort; None otherwise."""
    names = _class_names(exc)
    if "Abort" in names:
        return "aborted.", FAILED
    if "ClickException" not in names:
        return None
    ctx: Any = getattr(exc, "ctx", None)
    command_path = getattr(ctx, "command_path", None) or "fedguard"
    if "NoArgsIsHelpError" in names:
        commands = _subcommands(ctx)
        listed = f": {', '.join(commands)}" if commands else ""
        message = f"{command_path} needs a command{listed} (see {command_path} --help)."
    else:
        message = str(exc.format_message()) if hasattr(exc, "format_message") else str(exc)
        message = message.rstrip()
        commands = _subcommands(ctx)
        if message.startswith("Missing command") and commands:
            message = f"Missing command; give one of {', '.join(commands)}"
        if "UsageError" in names:
            message = f"{message.rstrip('.')}. See {command_path} --help."
    code = getattr(exc, "exit_code", USAGE)
    return message, code if isinstance(code, int) and code != 0 else USAGE


def _subcommands(ctx: Any) -> list[str]:
    command = getattr(ctx, "command", None)
    lister = getattr(command, "list_commands", None)
    if lister is None:
        return []
    try:
        return list(lister(ctx))
    except Exception:  # a listing problem must not hide the usage error itself
        return []
