"""The ``hub`` command's root callback: before any command runs it sets up logging once
for the process at ``HUB_LOG_LEVEL`` or ``--log-level``, and settings that do not validate
stop every command with one error line (exit 1)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.entry.cli import app
from hub.kernel.settings import get_settings


@pytest.fixture
def fresh_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings read anew (the root logger is restored by ``tests/conftest.py``)."""
    monkeypatch.setenv("HUB_LOG_LEVEL", "INFO")  # restored (removed) after the test
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _export(tmp_path: Path, *options: str) -> int:
    result = CliRunner().invoke(app, [*options, "schemas", "export", str(tmp_path / "out")])
    return result.exit_code


def test_every_command_logs_at_the_settings_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_logging: None
) -> None:
    monkeypatch.setenv("HUB_LOG_LEVEL", "warning")
    assert _export(tmp_path) == 0
    assert logging.getLogger().level == logging.WARNING
    assert [h.get_name() for h in logging.getLogger().handlers].count("hub") == 1


def test_log_level_option_overrides_the_settings(tmp_path: Path, fresh_logging: None) -> None:
    assert _export(tmp_path, "--log-level", "debug") == 0
    assert logging.getLogger().level == logging.DEBUG
    assert get_settings().log_level == "DEBUG"  # what a Runtime opened later configures


def test_unknown_log_level_is_a_usage_error(tmp_path: Path, fresh_logging: None) -> None:
    assert _export(tmp_path, "--log-level", "loud") == 2
    assert not (tmp_path / "out").exists()


def test_invalid_settings_are_one_error_line_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_logging: None
) -> None:
    monkeypatch.setenv("HUB_LOG_LEVEL", "loud")
    result = CliRunner().invoke(app, ["schemas", "export", str(tmp_path / "out")])
    assert result.exit_code == 1  # a permanent failure (hub.entry.commands.report_failure)
    assert result.stderr.startswith("error: ConfigError: invalid settings: log_level (HUB_LOG_LEVEL):")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing ran
