"""What both CAD row readers share (the reference :mod:`connectors.cad.mapping` and the fast
path :mod:`connectors.cad.fast`): the error of an unreadable value, the Y/N words of an
indicator column, the prefix of a content revision."""

from __future__ import annotations

from hub.kernel.errors import PermanentError


class FieldError(PermanentError, ValueError):
    """A field's value cannot be read; the message names the column and the expected
    form, never the value itself."""


YES = frozenset({"Y", "YES", "TRUE", "1"})
NO = frozenset({"N", "NO", "FALSE", "0"})

#: a revision that is a digest of the row's mapped content (exports without an updated-at)
CONTENT_REVISION_PREFIX = "sha256:"
