"""Secrets planted in clients' messages, from formats whose candidate spaces are enumerable.

A *format* is a template with slots — ``"my PIN is {d4}"`` has 10⁴ candidates, ``"call {name} on
555-{d4}"`` has |names| × 10⁴ —; a *secret* is one candidate of a format, drawn at random,
planted ``repetitions`` times in one client's messages. The formats and their candidate spaces are
public knowledge an attacker may have (Carlini et al. rank a canary among all candidates of its
format); the secrets themselves are ground truth and reach only metrics (``Truth``).

Public API
----------
``SLOT_VALUES`` : dict[str, tuple[str, ...]]
    The value list of every slot kind: ``d1`` … ``d9`` (k decimal digits), ``name`` (``NAMES``).
``SecretFormat(name: str, template: str)``
    ``.slots`` (slot kinds in order), ``.size`` (number of candidates, the product of the
    slots' value counts), ``.prefix`` (the text before the first slot: the extraction prompt),
    ``.render(index) -> str`` (candidate ``index`` in ``0 … size-1``, mixed radix, the last slot
    varying fastest), ``.candidates(start=0, stop=None) -> Iterator[str]`` (in index order),
    ``.index_of(text) -> int | None`` (inverse of ``render``; None if ``text`` is no candidate).
    A template without slots, or with an unknown slot, is a ``ConfigError`` (one sentence).
``DEFAULT_FORMATS`` : tuple[SecretFormat, ...]
    ``phone`` ("call {name} on 555-{d4}", 32 × 10⁴) and ``pin`` ("my PIN is {d4}", 10⁴), in
    sorted order of their names.
``Secret(format: str, index: int, text: str, client: int, repetitions: int)``
    One planted secret: its format's name, its candidate index and text, the client (natural
    group id of the dataset) whose messages hold it, and how many times it was planted.
``plant_secrets(formats, n_clients, secrets_per_client, repetitions, seed) -> tuple[Secret, ...]``
    ``secrets_per_client`` secrets for every client; secret j of a client uses format
    ``j mod len(formats)`` and is planted ``repetitions[j mod len(repetitions)]`` times; the
    candidate index is drawn uniformly from the stream ``(seed, client, "secrets")``.
``parse_formats(templates) -> tuple[SecretFormat, ...]``
    Formats from ``{"name": "template"}`` (in sorted order of the names: a mapping's order is
    not part of a config) or a list of templates (named ``format0``, ..., in list order).

References
----------
Carlini, Liu, Erlingsson, Kos, Song, "The Secret Sharer: Evaluating and Testing Unintended
Memorization in Neural Networks", USENIX Security 2019 (canaries from formats with enumerable
randomness spaces, inserted a controlled number of times).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from fedguard.errors import ConfigError
from fedguard.rng import numpy_generator

NAMES = (
    "Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi",
    "Ivan", "Judy", "Karl", "Laura", "Mallory", "Nina", "Oscar", "Peggy",
    "Quinn", "Rupert", "Sybil", "Trent", "Ursula", "Victor", "Wendy", "Xavier",
    "Yvonne", "Zoe", "Aaron", "Beth", "Chris", "Diana", "Ethan", "Fiona",
)  # fmt: skip

SLOT_VALUES: dict[str, tuple[str, ...]] = {"name": NAMES}
_SLOT = re.compile(r"\{([^{}]*)\}")
_DIGITS = re.compile(r"^d([1-9])$")


def _slot_values(kind: str) -> tuple[str, ...] | None:
    if kind in SLOT_VALUES:
        return SLOT_VALUES[kind]
    return None


def _slot_size(kind: str) -> int | None:
    digits = _DIGITS.match(kind)
    if digits:
        return 10 ** int(digits.group(1))
    values = _slot_values(kind)
    return None if values is None else len(values)


def _slot_value(kind: str, index: int) -> str:
    digits = _DIGITS.match(kind)
    if digits:
        return str(index).zfill(int(digits.group(1)))
    return SLOT_VALUES[kind][index]


@dataclass(frozen=True)
class SecretFormat:
    """A template with slots ``{d4}`` (4 digits), ``{name}`` (one of :data:`NAMES`), ...;
    its candidates are every filling of the slots (see the module's public API)."""

    name: str
    template: str
    slots: tuple[str, ...] = field(init=False)
    radices: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        slots = tuple(_SLOT.findall(self.template))
        where = f"dataset.secret_formats.{self.name}"
        if not slots:
            raise ConfigError(
                f"{where} ({self.template!r}) has no slot such as {{d4}} or {{name}}, so it has "
                "no candidates to rank a secret among."
            )
        radices = []
        for kind in slots:
            size = _slot_size(kind)
            if size is None:
                allowed = ", ".join(["d1 … d9", *sorted(SLOT_VALUES)])
                raise ConfigError(f"{where} has an unknown slot {{{kind}}}; allowed: {allowed}.")
            radices.append(size)
        object.__setattr__(self, "slots", slots)
        object.__setattr__(self, "radices", tuple(radices))

    @property
    def size(self) -> int:
        """Number of candidates."""
        return math.prod(self.radices)

    @property
    def prefix(self) -> str:
        """The text before the first slot (what an extraction attack prompts with)."""
        return self.template[: self.template.index("{")]

    def _digits(self, index: int) -> list[int]:
        if not 0 <= index < self.size:
            raise IndexError(f"candidate {index} of format {self.name!r} (size {self.size})")
        out = []
        for radix in reversed(self.radices):
            index, digit = divmod(index, radix)
            out.append(digit)
        return out[::-1]

    def render(self, index: int) -> str:
        """Candidate ``index`` as text (mixed radix over the slots, the last varying fastest)."""
        values = iter(
            _slot_value(k, d) for k, d in zip(self.slots, self._digits(index), strict=True)
        )
        return _SLOT.sub(lambda _: next(values), self.template)

    def candidates(self, start: int = 0, stop: int | None = None) -> Iterator[str]:
        """Candidates ``start … stop-1`` in index order."""
        for index in range(start, self.size if stop is None else min(stop, self.size)):
            yield self.render(index)

    def index_of(self, text: str) -> int | None:
        """The index of candidate ``text``, or None if it is not a candidate of this format."""
        pattern = "".join(
            f"({'|'.join(map(re.escape, _slot_values(p) or ()))})"
            if (i % 2 and _slot_values(p) is not None)
            else (rf"(\d{{{p[1:]}}})" if i % 2 else re.escape(p))
            for i, p in enumerate(_SLOT.split(self.template))
        )
        match = re.fullmatch(pattern, text)
        if match is None:
            return None
        index = 0
        for kind, radix, value in zip(self.slots, self.radices, match.groups(), strict=True):
            values = _slot_values(kind)
            index = index * radix + (values.index(value) if values is not None else int(value))
        return index


DEFAULT_FORMATS = (
    SecretFormat("phone", "call {name} on 555-{d4}"),
    SecretFormat("pin", "my PIN is {d4}"),
)


@dataclass(frozen=True)
class Secret:
    """One planted secret (ground truth: only metrics see it)."""

    format: str
    index: int
    text: str
    client: int
    repetitions: int


def parse_formats(templates: Mapping[str, str] | Sequence[str]) -> tuple[SecretFormat, ...]:
    """Formats from ``{name: template}`` or a list of templates (named ``format0``, …)."""
    # a mapping's order is not part of a config (spec files store keys sorted, and the spec
    # hash ignores it): formats are taken in sorted order of their names
    items = (
        sorted(templates.items())
        if isinstance(templates, Mapping)
        else [(f"format{i}", t) for i, t in enumerate(templates)]
    )
    if not items:
        raise ConfigError("dataset.secret_formats must list at least one format.")
    return tuple(SecretFormat(str(n), str(t)) for n, t in items)


def plant_secrets(
    formats: Sequence[SecretFormat],
    n_clients: int,
    secrets_per_client: int,
    repetitions: Sequence[int],
    seed: int,
) -> tuple[Secret, ...]:
    """The secrets of every client (see the module's public API); distinct within a format."""
    if not formats or not repetitions:
        raise ConfigError("dataset.secret_formats and dataset.repetitions must not be empty.")
    out: list[Secret] = []
    used: set[tuple[str, int]] = set()
    for client in range(n_clients):
        rng = numpy_generator(seed, -1, client, "secrets")
        for j in range(secrets_per_client):
            fmt = formats[j % len(formats)]
            index = int(rng.integers(fmt.size))
            while (fmt.name, index) in used and len(used) < fmt.size:
                index = int(rng.integers(fmt.size))  # distinct secrets: ranks stay unambiguous
            used.add((fmt.name, index))
            reps = int(repetitions[j % len(repetitions)])
            out.append(Secret(fmt.name, index, fmt.render(index), client, reps))
    return tuple(out)


__all__ = [
    "DEFAULT_FORMATS",
    "NAMES",
    "SLOT_VALUES",
    "Secret",
    "SecretFormat",
    "parse_formats",
    "plant_secrets",
]
