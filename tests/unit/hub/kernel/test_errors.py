"""The error hierarchy: every exception class of the hub says whether retrying can succeed,
library outages are classified as retriable, adapters turn them into ServiceUnavailable,
and the CLI maps the kinds to exit codes."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil

import asyncpg
import pytest
import typer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, TopicAuthorizationFailedError

from connectors.registry import ConfigError as RegistryConfigError
from hub.entry.commands import EXIT_FAILURE, EXIT_UNAVAILABLE, run_or_exit
from hub.kernel import errors
from hub.kernel.errors import (
    ConfigError,
    HubError,
    PermanentError,
    ServiceUnavailable,
    TransientError,
    is_retriable,
    outage_boundary,
    unavailable,
)

#: class → (kind, the built-in base callers historically caught); the table of the
#: errors module's docstring, checked against the code
EXPECTED: dict[str, tuple[type[HubError], type[BaseException]]] = {
    "hub.entry.api.auth.AuthError": (PermanentError, Exception),
    "hub.entry.api.roles.Forbidden": (PermanentError, Exception),
    "hub.entry.api.roles.BadPurpose": (PermanentError, ValueError),
    "hub.entry.api.auth.MissingToken": (PermanentError, Exception),
    "hub.entry.api.roles.UnknownPurpose": (PermanentError, ValueError),
    "hub.kernel.binding.ClusterMismatchError": (PermanentError, RuntimeError),
    "hub.kernel.crypto.KeyDestroyedError": (PermanentError, LookupError),
    "hub.kernel.crypto.KeyNotResolved": (TransientError, LookupError),
    "hub.kernel.db.MigrationError": (PermanentError, RuntimeError),
    "hub.kernel.deadletters.ValueFreeError": (PermanentError, ValueError),
    "hub.kernel.deadletters.ErasedPayloadError": (PermanentError, LookupError),
    "hub.kernel.erasure.ErasureError": (PermanentError, ValueError),
    "hub.kernel.errors.ConfigError": (PermanentError, ValueError),
    "hub.kernel.vocabulary.VocabularyError": (PermanentError, ValueError),
    "hub.kernel.custom_fields.CustomDefinitionError": (PermanentError, ValueError),
    "projections.store.VocabularyVersionError": (PermanentError, ValueError),
    "projections.publisher.DefinitionsVersionError": (PermanentError, ValueError),
    "hub.kernel.errors.InfraError": (PermanentError, RuntimeError),
    "hub.kernel.errors.ServiceUnavailable": (TransientError, RuntimeError),
    "hub.kernel.keys.MissingKeyError": (PermanentError, RuntimeError),
    "hub.kernel.token.TokenError": (PermanentError, RuntimeError),
    "hub.kernel.keys.KeyFileError": (PermanentError, ValueError),
    "hub.kernel.log.UnknownEventTypeError": (PermanentError, ValueError),
    "hub.kernel.log.AppendError": (TransientError, RuntimeError),
    "hub.kernel.log.AckTimeout": (TransientError, TimeoutError),
    "hub.kernel.log.DeadLetterError": (TransientError, RuntimeError),
    "hub.kernel.log.CorruptRecordError": (PermanentError, ValueError),
    "connectors.cad.csvfile.CsvLayoutError": (PermanentError, ValueError),
    "connectors.cad.eido.EidoError": (PermanentError, ValueError),
    "connectors.core.jsondoc.BadJson": (PermanentError, ValueError),
    "connectors.core.http.Refused": (PermanentError, ValueError),
    "connectors.cad.rowvalues.FieldError": (PermanentError, ValueError),
    "connectors.cases.mapping.CaseRecordError": (PermanentError, ValueError),
    "connectors.fhir.bundle.BundleInvalid": (PermanentError, ValueError),
    "connectors.fhir.client.TokenError": (TransientError, RuntimeError),
    "projections.projector.ProjectorStalled": (TransientError, RuntimeError),
    "connectors.hl7v2.ack.AckInvalid": (PermanentError, ValueError),
    "connectors.hl7v2.ack.AckMismatch": (PermanentError, ValueError),
    "connectors.hl7v2.codec.Er7Error": (PermanentError, ValueError),
    "connectors.hl7v2.mllp.FrameTooLarge": (PermanentError, ValueError),
    "connectors.hl7v2.mllp.MllpError": (TransientError, ConnectionError),
    "connectors.hl7v2.mllp.MllpTimeout": (TransientError, ConnectionError),
    "connectors.hl7v2.mllp.MllpConnectError": (TransientError, ConnectionError),
    "connectors.hl7v2.ref_i12.MessageInvalid": (PermanentError, ValueError),
    "connectors.hl7v2.rri.InboundRefused": (PermanentError, ValueError),
    "projections.replay.ReplayError": (PermanentError, RuntimeError),
    "projections.buckets.KeyMismatch": (PermanentError, RuntimeError),
    "hub.kernel.recordmac.MacKeyError": (PermanentError, ValueError),
    "connectors.intake.form.FormInvalid": (PermanentError, ValueError),
    "connectors.intake.service.SubmissionConflict": (PermanentError, Exception),
    "connectors.intake.service.NotYourSubmission": (PermanentError, Exception),
    "connectors.intake.service.UnknownSubmission": (PermanentError, Exception),
}
BASES = {"hub.kernel.errors.HubError", "hub.kernel.errors.TransientError", "hub.kernel.errors.PermanentError"}


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in hub, connectors and projections."""
    found: dict[str, type[BaseException]] = {}
    for pkg in ("hub", "connectors", "projections"):
        root = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(root.__path__, pkg + "."):
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                    found[f"{info.name}.{name}"] = obj
    return found


def test_every_exception_class_is_a_hub_error_of_its_documented_kind() -> None:
    found = defined_exceptions()
    assert set(found) - BASES == set(EXPECTED), "a new exception class needs a kind (and a row in the table)"
    for name, (kind, builtin) in EXPECTED.items():
        cls = found[name]
        assert issubclass(cls, kind) and issubclass(cls, builtin), name
        assert cls.retriable is (kind is TransientError), name
        assert cls.__name__ in (errors.__doc__ or ""), f"{name} is missing from the errors table"


def test_connector_configuration_errors_are_the_kernels() -> None:
    assert RegistryConfigError is ConfigError


@pytest.mark.parametrize(
    ("exc", "retriable"),
    [
        (ServiceUnavailable("down"), True),
        (ConfigError("bad"), False),
        (asyncpg.CannotConnectNowError("starting up"), True),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), True),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.UniqueViolationError("duplicate key"), False),
        (asyncpg.UndefinedTableError("no such table"), False),
        (KafkaConnectionError("no broker"), True),
        (KafkaTimeoutError(), True),
        (TopicAuthorizationFailedError(), False),
        (TimeoutError(), True),
        (ConnectionRefusedError(111, "refused"), True),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed"), True),
        (FileNotFoundError(2, "no such file"), False),
        (PermissionError(13, "denied"), False),
        (ValueError("bad input"), False),
        (KeyError("x"), False),
    ],
)
def test_is_retriable_separates_outages_from_bad_input(exc: BaseException, retriable: bool) -> None:
    assert is_retriable(exc) is retriable


def _raised_while_handling(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 (the implicit context is the point)
    except BaseException as exc:
        return exc


def test_a_transaction_left_after_its_connection_died_is_an_outage() -> None:
    """asyncpg raises ``InterfaceError`` ("the underlying connection is closed") from the
    ``async with conn.transaction()`` exit when the connection died inside the block (issue
    13: a connection cut right after the acknowledgements of an append): an outage, not a bug."""
    closed = asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the connection is closed")
    died = _raised_while_handling(closed, asyncpg.ConnectionDoesNotExistError("closed mid-operation"))
    assert is_retriable(died)
    assert not is_retriable(_raised_while_handling(closed, ValueError("a bug")))
    assert not is_retriable(asyncpg.InterfaceError("another operation is in progress"))


def test_unavailable_wraps_outages_only() -> None:
    wrapped = pytest.raises(ServiceUnavailable, match="cursor store unavailable: ConnectionRefusedError")
    with wrapped as caught, unavailable("cursor store"):
        raise ConnectionRefusedError(111, "Connect call failed")
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    with pytest.raises(ServiceUnavailable, match="no answer in time"), unavailable("key store"):
        raise TimeoutError
    with pytest.raises(asyncpg.UniqueViolationError), unavailable("cursor store"):
        raise asyncpg.UniqueViolationError("duplicate key")  # a bug or bad input: unchanged
    with pytest.raises(ConfigError), unavailable("cursor store"):
        raise ConfigError("bad")


def test_outage_boundary_guards_the_public_coroutines_of_an_adapter() -> None:
    @outage_boundary("test store")
    class Store:
        async def load(self) -> None:
            raise asyncpg.CannotConnectNowError("the database system is starting up")

        async def _raw(self) -> None:
            raise asyncpg.CannotConnectNowError("the database system is starting up")

        def sync(self) -> None:
            raise ConnectionError("x")

    with pytest.raises(ServiceUnavailable, match="test store unavailable: CannotConnectNowError"):
        asyncio.run(Store().load())
    with pytest.raises(asyncpg.CannotConnectNowError):
        asyncio.run(Store()._raw())
    with pytest.raises(ConnectionError):
        Store().sync()


def test_cli_exits_75_for_an_unavailable_service_and_1_for_a_permanent_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def outage() -> None:
        raise ServiceUnavailable("key store unavailable: TimeoutError: no answer in time")

    async def refused() -> None:
        raise ConfigError("components.yaml: component #1 has no 'kind'")

    with pytest.raises(typer.Exit) as down:
        run_or_exit(outage(), "cannot ingest")
    assert down.value.exit_code == EXIT_UNAVAILABLE == 75
    err = capsys.readouterr().err
    assert err == (
        "error: cannot ingest: service unavailable, try again later: "
        "ServiceUnavailable: key store unavailable: TimeoutError: no answer in time\n"
    )
    with pytest.raises(typer.Exit) as bad:
        run_or_exit(refused(), "cannot start")
    assert bad.value.exit_code == EXIT_FAILURE == 1
    err = capsys.readouterr().err
    assert err == "error: cannot start: ConfigError: components.yaml: component #1 has no 'kind'\n"
