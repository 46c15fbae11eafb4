"""JSON as chatkeep accepts it, wherever it comes from: a request body (``chatkeep.api.body``) or a line of
``chatkeep import`` (``chatkeep.store.transfer``), so both refuse exactly the same text.

Parsed by pydantic-core: no ``NaN``/``Infinity``, no number beyond a double (``1e400``, which would otherwise
become ``inf`` and be stored as ``null``), no lone surrogates, nesting bounded (pydantic-core's recursion limit:
a clear error instead of a ``RecursionError``). Strings with a NUL character parse; no database can store them, so
both callers refuse them with :func:`chatkeep.protocol.messages.find_forbidden_characters`, naming the place.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic_core import from_json

__all__ = ["has_non_finite_number", "parse_json"]

#: What a number beyond a double needs in its text: an exponent of three digits or more, or 309 digits. The text
#: is first reduced to its shape (every digit a ``0``, every ``E`` an ``e``): a few substring searches on that are
#: ten times faster than a regular expression over a large body. Only a text with such a shape (or a string that
#: looks like one) is walked by :func:`has_non_finite_number`.
_NUMBER_SHAPE = bytes.maketrans(b"123456789E", b"000000000e")
_HUGE_NUMBER_SHAPES = (b"e000", b"e+000", b"e-000", b"0" * 309)


def _may_hold_huge_number(raw: bytes) -> bool:
    shape = raw.translate(_NUMBER_SHAPE)
    return any(pattern in shape for pattern in _HUGE_NUMBER_SHAPES)


def has_non_finite_number(value: Any) -> bool:
    """Whether ``value`` (parsed JSON) holds a number no JSON can represent: ``inf``, ``-inf`` or ``nan``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(raw: bytes) -> Any:
    """Parse ``raw`` (UTF-8) strictly (see the module docstring).

    Raises:
        ValueError: the text is not JSON chatkeep accepts; the message says why and where.
    """
    value = from_json(raw, allow_inf_nan=False)
    if _may_hold_huge_number(raw) and has_non_finite_number(value):
        raise ValueError("a number is out of range (beyond a double, such as 1e400)")
    return value
