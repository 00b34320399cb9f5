"""The key store's token settings: production refuses a missing module or a missing,
empty or short PIN; development defaults to SoftHSM2 under ``state_dir``."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.kernel.errors import ConfigError
from hub.kernel.settings import KeystoreSettings, Settings
from hub.kernel.token import dev_token_action, token_config


def prod(tmp_path: Path, **keystore: object) -> Settings:
    return Settings(state_dir=tmp_path, environment="production", keystore=KeystoreSettings(**keystore))


def test_production_refuses_a_missing_module_or_pin(tmp_path: Path) -> None:
    module = tmp_path / "libvendor.so"
    with pytest.raises(ConfigError, match=r"keystore\.module"):
        token_config(prod(tmp_path))
    with pytest.raises(ConfigError, match=r"keystore\.pin_file"):
        token_config(prod(tmp_path, module=module))
    with pytest.raises(ConfigError, match="cannot read the token PIN"):
        token_config(prod(tmp_path, module=module, pin_file=tmp_path / "absent.pin"))
    for bad in ("", "   \n", "1234567"):
        pin = tmp_path / "token.pin"
        pin.write_text(bad)
        with pytest.raises(ConfigError, match="empty or shorter"):
            token_config(prod(tmp_path, module=module, pin_file=pin))


def test_production_takes_the_operators_module_and_pin(tmp_path: Path) -> None:
    pin = tmp_path / "token.pin"
    pin.write_text("s3cret-pin-of-the-hsm\n")
    cfg = token_config(prod(tmp_path, module=tmp_path / "libvendor.so", pin_file=pin, token_label="county"))
    assert (cfg.module, cfg.label, cfg.pin, cfg.softhsm_conf) == (
        tmp_path / "libvendor.so", "county", "s3cret-pin-of-the-hsm", None
    )



@pytest.mark.parametrize(
    ("listed", "marked", "any_token", "final", "expected"),
    [
        (1, True, True, False, "ready"),  # the everyday start
        (0, False, False, False, "initialise"),  # first use
        (0, True, False, False, "initialise"),  # the tokens were removed, the marker stayed
        (1, False, True, False, "reinitialise"),  # the per-person layout
        # the race: a reading while another process rewrites the token file lists no label
        (0, True, True, False, "look again"),
        (0, True, True, True, "missing"),  # never a second token of a marked label
        (0, False, True, False, "look again"),
        (0, False, True, True, "initialise"),  # a token killed half-way through its initialisation
        (2, True, True, False, "duplicated"),
        (2, False, True, True, "duplicated"),
    ],
)
def test_the_dev_token_is_initialised_only_where_none_of_its_label_can_be(
    listed: int, marked: bool, any_token: bool, final: bool, expected: str
) -> None:
    assert dev_token_action(listed, marked, any_token, final=final) == expected
