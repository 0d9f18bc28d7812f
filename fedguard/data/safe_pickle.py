"""A restricted unpickler for data files from elsewhere (CIFAR's python batches).

``pickle.load`` on an untrusted file can execute arbitrary code: any importable callable may be
named by a ``GLOBAL`` opcode. This unpickler resolves only the few globals a pickled numpy array
needs; anything else is refused before it is imported.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from fedguard.errors import ConfigError

#: the globals a pickled ``numpy.ndarray`` refers to (numpy 1.x and 2.x spellings)
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name}")
        return super().find_class(module, name)


def load_restricted(data: bytes, what: str) -> Any:
    """Unpickle ``data`` (Python 2 pickles decoded as bytes), allowing only numpy arrays, lists,
    dicts, strings, bytes and numbers; ``what`` names the file in the error sentence."""
    try:
        return _Restricted(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise ConfigError(
            f"{what} is not a plain data pickle (it refers to {exc}, which fedguard refuses to "
            "load: only numpy arrays, lists, dicts, strings and numbers are allowed)."
        ) from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ConfigError(f"{what} is not a readable pickle ({type(exc).__name__}).") from None
