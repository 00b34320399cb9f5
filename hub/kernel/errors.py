"""The hub's error hierarchy: every error the hub raises on purpose is a :class:`HubError`,
and says whether trying again later can succeed (``retriable``), so callers never catch a
bare ``Exception`` to decide between backing off and dead-lettering.

- :class:`TransientError` (``retriable = True``): a service the hub depends on is
  unavailable or timed out (Kafka, PostgreSQL, the key store, an EHR). The input is fine;
  a connector backs off and tries the same record again, never dead-letters it.
- :class:`PermanentError` (``retriable = False``): the input or the configuration is wrong
  (a record that cannot be mapped, a bad setting, a cluster mismatch). Trying again gives
  the same answer; a connector dead-letters the record, a command exits non-zero.

Subclasses keep their specific meaning and may also derive from the built-in type callers
historically caught (``ValueError``, ``RuntimeError``), so existing handlers keep working.
"""

from __future__ import annotations

from typing import ClassVar


class HubError(Exception):
    """Base of every error the hub raises deliberately."""

    retriable: ClassVar[bool] = False


class TransientError(HubError):
    """A dependency is unavailable or timed out; the same call may succeed later."""

    retriable = True


class PermanentError(HubError):
    """Bad input or configuration; the same call fails the same way again."""

    retriable = False


class ConfigError(PermanentError, ValueError):
    """A configuration file or setting is invalid; the message names where and why."""


class ServiceUnavailable(TransientError, RuntimeError):
    """Kafka, PostgreSQL, the key store or a remote endpoint could not be reached in time."""


class InfraError(PermanentError, RuntimeError):
    """A failure of the services' set-up that the operator can act on; the message says
    what happened and what to do."""


def is_retriable(exc: BaseException) -> bool:
    """True for errors worth retrying: a :class:`TransientError`, or an OS-level/connection
    error or timeout raised by a client library below the hub (they carry no flag)."""
    if isinstance(exc, HubError):
        return exc.retriable
    return isinstance(exc, (TimeoutError, ConnectionError, OSError))
