"""Key files outside development (:mod:`hub.kernel.keys`): empty, short, non-hex and
group/other-readable files are refused with a ConfigError naming the file; development
keeps generating its own keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.kernel.errors import ConfigError
from hub.kernel.keys import KeyFileError, MissingKeyError, record_mac_keys, secret_bytes, secret_text
from hub.kernel.settings import Settings

GOOD = ("ab" * 32).encode()


def _production(tmp_path: Path) -> Settings:
    (tmp_path / "keys").mkdir(mode=0o700)
    return Settings(state_dir=tmp_path, environment="production")


def _key(settings: Settings, name: str, content: bytes, mode: int = 0o600) -> Path:
    path = settings.keys_dir / name
    path.write_bytes(content)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("content", "mode", "rule"),
    [
        (b"", 0o600, "is empty"),
        (b"\n", 0o400, "is empty"),
        (b"abcd", 0o600, "holds 2 bytes; at least 32"),
        (b"not hex at all", 0o600, "is not hex"),
        (GOOD, 0o644, "accessible to group or others (mode 0644)"),
        (GOOD, 0o640, "accessible to group or others (mode 0640)"),
        (GOOD, 0o604, "accessible to group or others"),
    ],
)
def test_production_refuses_weak_or_exposed_key_files(
    tmp_path: Path, content: bytes, mode: int, rule: str
) -> None:
    settings = _production(tmp_path)
    path = _key(settings, "webhook.key", content, mode)
    with pytest.raises(ConfigError) as refused:
        secret_bytes(settings, "webhook.key")
    assert isinstance(refused.value, KeyFileError)
    assert str(path) in str(refused.value) and rule in str(refused.value)


def test_production_accepts_a_private_key_file_and_never_generates_one(tmp_path: Path) -> None:
    settings = _production(tmp_path)
    _key(settings, "master.key", GOOD, 0o400)
    assert secret_bytes(settings, "master.key") == bytes.fromhex(GOOD.decode())
    with pytest.raises(MissingKeyError):
        secret_bytes(settings, "pseudonym.key")


def test_production_secret_text_and_record_mac_keys_are_checked_too(tmp_path: Path) -> None:
    settings = _production(tmp_path)
    _key(settings, "postgres_runtime.password", b"s3cret", 0o644)
    with pytest.raises(KeyFileError, match=r"postgres_runtime\.password is accessible"):
        secret_text(settings, "postgres_runtime.password")
    _key(settings, "postgres.password", b"", 0o600)
    with pytest.raises(KeyFileError, match=r"postgres\.password is empty"):
        secret_text(settings, "postgres.password")
    _key(settings, "record-mac.k1.key", GOOD, 0o666)
    with pytest.raises(KeyFileError, match=r"record-mac\.k1\.key is accessible"):
        record_mac_keys(settings)


def test_development_generates_private_keys_and_still_refuses_an_empty_one(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    key = secret_bytes(settings, "webhook.key")
    assert len(key) == 32 and (settings.keys_dir / "webhook.key").stat().st_mode & 0o077 == 0
    (settings.keys_dir / "webhook.key").write_bytes(b"")
    with pytest.raises(KeyFileError, match=r"webhook\.key is empty"):
        secret_bytes(settings, "webhook.key")
