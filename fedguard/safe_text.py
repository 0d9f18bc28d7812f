"""Text from a run folder or a user's input made safe to print on a terminal.

A shared run folder can carry a run name with ANSI/OSC escape codes (which can retitle the
terminal, hide text or, on some terminals, write files); rich markup in a message would be
interpreted as styling. Both are neutralised here, before anything reaches the console.
"""

from __future__ import annotations

import unicodedata

from rich.markup import escape


def printable(text: str) -> str:
    """``text`` with every control or format character (ESC, BEL, CR, bidi overrides, …) shown as
    a visible escape (``\\x1b``) instead of being interpreted by the terminal."""
    return "".join(ch if ch.isprintable() else _visible(ch) for ch in str(text))


def _visible(ch: str) -> str:
    code = ord(ch)
    if unicodedata.category(ch) == "Zs":  # a non-ASCII space is harmless
        return " "
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """One printable line, with rich markup escaped: for error messages."""
    flat = " ".join(str(text).split())
    return escape(printable(flat))


def markup_safe(text: str) -> str:
    """Printable text with rich markup escaped, for table cells and summaries."""
    return escape(printable(text))
