"""Benchmark protocols: our defaults and a paper's, as named presets of a settings dataclass.

A benchmark's settings class (PointPrompt's ``BenchmarkConfig``, Show-or-Tell's
``RunSettings``) has a ``protocol`` field naming the preset it started from;
:func:`preset` builds its values, with every explicit choice winning, and
:func:`check_choices` gives the one-line error for a value a field does not take.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .errors import SegpromptError

PROTOCOLS: tuple[str, ...] = ("ours", "paper")


def preset(protocol: str, paper: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The field values of ``protocol``: ``paper``'s for the paper's (ours are the class defaults), then ``overrides``.

    Raises:
        SegpromptError: an unknown protocol.
    """
    if protocol not in PROTOCOLS:
        raise SegpromptError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return {"protocol": protocol, **(paper if protocol == "paper" else {}), **overrides}


def check_choices(settings: object, choices: Mapping[str, Sequence[Any]]) -> None:
    """Raise :class:`SegpromptError` naming the first field of ``settings`` whose value is not among its ``choices``."""
    for name, allowed in choices.items():
        value = getattr(settings, name)
        if value not in allowed:
            raise SegpromptError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
