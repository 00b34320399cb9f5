"""Parsing untrusted JSON bodies (pure): the receivers' one boundary check.

:func:`parse_json` accepts what the hub can carry through the log and PostgreSQL, and
refuses with :class:`BadJson` (a ``ValueError`` whose message names the problem, never
the content) what would otherwise fail deep inside: a body that is not UTF-8 or not JSON,
nesting deeper than ``max_depth`` (Python's parser would raise ``RecursionError``; the
receivers would answer 500), and NUL characters in any string or key (PostgreSQL ``text``
and ``jsonb`` cannot hold them, so such a fact would be a poison record for the
projections).
"""

from __future__ import annotations

import json
from typing import Any

from hub.kernel.errors import PermanentError

#: nesting depth of a JSON document the receivers accept (EIDO and case records need < 10)
MAX_DEPTH = 32


class BadJson(PermanentError, ValueError):
    """An untrusted body the hub refuses (the message is safe to send back)."""


def parse_json(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of ``raw``, or :class:`BadJson` (see the module docstring)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadJson("not JSON: UnicodeDecodeError") from None
    if "\x00" in raw:
        raise BadJson("not JSON: the body contains a NUL byte")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise BadJson(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise BadJson(f"not JSON: {type(exc).__name__}") from None
    check_value(value, max_depth)
    return value


def check_value(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse (:class:`BadJson`) a decoded value nested deeper than ``max_depth`` or with a
    NUL character in a string or key (iterative: no recursion limit to hit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise BadJson(f"JSON nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if "\x00" in key:
                        raise BadJson("a JSON key contains a NUL character")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and "\x00" in item:
            raise BadJson("a JSON string contains a NUL character")
