"""The hub's error hierarchy: every error the hub raises on purpose is a :class:`HubError`,
and says whether trying again later can succeed (``retriable``), so callers never catch a
bare ``Exception`` to decide between backing off and dead-lettering.

- :class:`TransientError` (``retriable = True``): a service the hub depends on is
  unavailable or timed out (Kafka, PostgreSQL, the key store, an EHR). The input is fine;
  a connector backs off and tries the same record again, never dead-letters it.
- :class:`PermanentError` (``retriable = False``): the input or the configuration is wrong
  (a record that cannot be mapped, a bad setting, a cluster mismatch). Trying again gives
  the same answer; a connector dead-letters the record, a command exits non-zero.

Subclasses keep their specific meaning and also derive from the built-in type callers
historically caught (``ValueError``, ``RuntimeError``, ``LookupError``, ``ConnectionError``),
so existing handlers keep working.

Errors of the client libraries below the hub carry no flag of ours. The adapters (the key
store, the connector state stores, the delivery ledger, the event log, the pool factory)
turn their connection failures and timeouts into :class:`ServiceUnavailable` with
:func:`unavailable` / :func:`outage_boundary`, so a caller sees one kind;
:func:`is_retriable` classifies whatever still arrives raw.

What callers do (transient = retriable):

===================================  =========  ===========================================
class (module)                       kind       what callers do
===================================  =========  ===========================================
ServiceUnavailable (here)            transient  source runner / pollers: back off (jitter),
                                                keep the cursor; receivers: 503 +
                                                Retry-After; CLI: "service unavailable",
                                                exit 75
AppendError (kernel.log)             transient  as ServiceUnavailable; a re-append appends
                                                exactly the failed envelopes
DeadLetterError (kernel.log)         transient  as ServiceUnavailable; a re-write writes
                                                exactly the failed letters
AckTimeout (kernel.log)              transient  inside AppendError / DeadLetterError: no
                                                acknowledgement within append_timeout_s
KeyNotResolved (kernel.crypto)       transient  a key was not looked up before pure code
                                                asked for it (a bug): retried, never
                                                dead-lettered
TokenError (connectors.fhir.client)  transient  delivery: counted attempt, retried later
MllpError, MllpTimeout (hl7v2.mllp)  transient  delivery: counted attempt, outcome unknown:
                                                resent (same MSH-10) within the budget
MllpConnectError (hl7v2.mllp)        transient  delivery: nothing sent, retried later
ProjectorStalled (proj.projector)    transient  ``hub project``: no progress for
                                                probe_stale_s: exit 75, restarted
ConfigError (here)                   permanent  command / component start: message, exit 1
InfraError (here)                    permanent  message saying what to do, exit 1
MigrationError (kernel.db)           permanent  as InfraError
ClusterMismatchError (kernel.bind.)  permanent  as InfraError (refuse to start)
MissingKeyError (kernel.keys)        permanent  as InfraError (production key file absent)
TokenError (kernel.token)            permanent  as InfraError (PKCS#11 token absent/refusing)
KeyFileError (kernel.keys)           permanent  as ConfigError (empty, short, not hex or
                                                group/other-readable key file)
MacKeyError (kernel.recordmac)       permanent  as ConfigError (no current record-MAC
                                                key, or a key shorter than 32 bytes)
KeyDestroyedError (kernel.crypto)    permanent  the person was erased: drop the sealed
                                                field, or fail the referral as "erased"
UnknownEventTypeError (kernel.log)   permanent  the envelope is refused before any I/O
CorruptRecordError (kernel.log)      permanent  readers skip and count / dead-letter it
ErasureError (kernel.erasure)        permanent  ``hub erase``: message, exit 1
ValueFreeError (kernel.deadletters)  permanent  a rejection whose message may be shown
ErasedPayloadError (kernel.deadl.)   permanent  dead letter of an erased person: show
                                                "erased", re-drive fails
CaseRecordError, FieldError,         permanent  mapper: rejection → dead letter
EidoError, CsvLayoutError, Er7Error,
BundleInvalid, MessageInvalid
InboundRefused, FrameTooLarge        permanent  HL7 listener: AE/AR + dead letter
BadJson (connectors.core.jsondoc)    permanent  receivers: 400 / EIDO rejection
Refused (connectors.core.http)       permanent  receivers: the 4xx it carries
AckInvalid, AckMismatch (hl7v2.ack)  permanent  delivery: "protocol" answer
ReplayError (projections.replay)     permanent  ``hub replay``: message, exit 1
VocabularyError (kernel.vocabulary)  permanent  as ConfigError: file, line and code named,
                                                nothing applied
CustomDefinitionError                permanent  as ConfigError: file, line, metric and field
(kernel.custom_fields)                          named, nothing applied
DefinitionsVersionError              permanent  projector: custom definitions changed without
(projections.publisher)                         a new version, nothing released
VocabularyVersionError (proj.store)  permanent  projector start / reclassify: a vocabulary
                                                changed without a new version, exit 1
KeyMismatch (projections.buckets)    permanent  ``hub replay``: message, exit 1 (a bug)
AuthError, Forbidden, BadPurpose     permanent  read API: 401 / 403 / 400
FormInvalid (connectors.intake.form) permanent  intake API: 422 with field messages
SubmissionConflict                   permanent  intake API: 409 / 403 / 404 (nothing is
NotYourSubmission, UnknownSubmission            appended)
MissingToken, UnknownPurpose         permanent  the same (they name the refusal's reason)
===================================  =========  ===========================================

Errors of ``schemas/`` (which imports nothing of the hub) are plain ``ValueError`` /
``KeyError`` about the input; :func:`is_retriable` reads them as permanent.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar, cast

import asyncpg
from aiokafka.errors import KafkaError, KafkaTimeoutError


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


#: PostgreSQL failures that say the server is down, restarting, overloaded or slow (not
#: that the statement is wrong): connection errors, 57xxx operator intervention (admin
#: shutdown, cannot connect now, statement timeout), 53xxx insufficient resources, lock
#: timeouts, and transactions rolled back for a deadlock or serialization conflict.
PG_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.LockNotAvailableError,
    asyncpg.TransactionRollbackError,
)

#: ``OSError`` subclasses about files, not about reaching a service: never retriable.
FILE_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def is_retriable(exc: BaseException) -> bool:
    """True for errors worth retrying: a :class:`TransientError`; an aiokafka error it flags
    retriable (or a Kafka timeout); a PostgreSQL outage (:data:`PG_OUTAGES`); a timeout, a
    connection error or another socket-level ``OSError`` (not a file error such as a
    missing file); asyncpg's "the underlying connection is closed" (an ``InterfaceError``
    raised while leaving a transaction whose connection died, with the outage as its
    context). Everything else — bad input, bad configuration, bugs — is permanent."""
    if isinstance(exc, HubError):
        return exc.retriable
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
    if isinstance(exc, PG_OUTAGES):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        context = exc.__context__
        return context is not None and context is not exc and is_retriable(context)
    if isinstance(exc, FILE_ERRORS):
        return False
    return isinstance(exc, (TimeoutError, ConnectionError, OSError))


@contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Inside the block, a retriable library error (see :func:`is_retriable`) becomes
    :class:`ServiceUnavailable` naming ``what`` ("key store", "cursor store" …) and the
    original error's type and message (connection errors and timeouts quote no input);
    a :class:`HubError` and every other error pass through unchanged."""
    try:
        yield
    except HubError:
        raise
    except Exception as exc:
        if not is_retriable(exc):
            raise
        detail = str(exc) or ("no answer in time" if isinstance(exc, TimeoutError) else "no detail")
        raise ServiceUnavailable(f"{what} unavailable: {type(exc).__name__}: {detail}"[:500]) from exc


F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


def outage_boundary(what: str) -> Callable[[C], C]:
    """Class decorator for an adapter: every public coroutine method runs inside
    :func:`unavailable` (``what``), so its callers see :class:`ServiceUnavailable` for an
    outage of the service behind it."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            with unavailable(what):
                return await fn(*args, **kwargs)

        return cast(F, guarded)  # same signature: wraps() copies it, the body only adds the boundary

    def decorate(cls: C) -> C:
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                setattr(cls, name, wrap(member))
        return cls

    return decorate
