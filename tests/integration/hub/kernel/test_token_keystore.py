"""The PKCS#11 token behind the keyring, on the real SoftHSM2 token of the development
setup: token keys cannot be read out, another process sees the same key, and destroying a
key removes its object file from the token directory (nothing left to recover)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest
from pkcs11 import Attribute

from hub.kernel.crypto import KeyDestroyedError, seal, unseal
from hub.kernel.runtime import Runtime
from hub.kernel.settings import PROJECT_ROOT
from hub.kernel.token import TokenError, _on_token_thread, softhsm_dir

pytestmark = pytest.mark.integration


def object_files(rt: Runtime) -> set[str]:
    tokens = softhsm_dir(rt.settings) / "tokens"
    return {p.name for p in tokens.glob("*/*.object") if p.name != "token.object"}


async def test_token_keys_are_not_extractable_and_destroy_removes_their_file(log_rt: Runtime) -> None:
    token = log_rt.keyring.token
    person = "psn_" + uuid.uuid4().hex
    kid = log_rt.keyring.key_id(person)
    before = object_files(log_rt)
    sealed = await asyncio.to_thread(seal, log_rt.keyring, person, {"note": "Jane"})
    created = object_files(log_rt) - before
    assert len(created) == 1  # one token object for the person

    row = await log_rt.pool.fetchrow(
        f"SELECT wrapped, token_id FROM {log_rt.settings.core_schema}.person_keys WHERE kid = $1", kid
    )
    token_id = bytes(row["token_id"])

    def read_value() -> object:
        key = token._find(token_id)
        return key[Attribute.VALUE]

    with pytest.raises(TokenError):  # sensitive and non-extractable: the token never hands it out
        _on_token_thread(read_value)

    # another process (its own PKCS#11 session) opens the same payload
    code = (
        "import asyncio, json, sys\n"
        "from hub.bootstrap import open_runtime\n"
        "from hub.kernel.crypto import unseal\n"
        "from schemas.base import Sealed\n"
        "async def main():\n"
        "    async with open_runtime(ensure_topics=False) as rt:\n"
        "        keys = await rt.keyring.resolve_ids([sys.argv[1]])\n"
        "        print(json.dumps(unseal(keys, Sealed.model_validate_json(sys.argv[2]))))\n"
        "asyncio.run(main())\n"
    )
    env = os.environ | {"HUB_KAFKA__TOPIC_PREFIX": log_rt.settings.kafka.topic_prefix,
                        "HUB_STATE_DIR": str(log_rt.settings.state_dir)}
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code, kid, sealed.model_dump_json()],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == '{"note": "Jane"}', out.stderr

    assert await log_rt.keyring.destroy(person) is True
    assert not (object_files(log_rt) & created)  # the object file is gone from the token dir
    log_rt.keyring.invalidate()
    assert token.decrypt(token_id, kid, bytes(row["wrapped"])) is None
    with pytest.raises(KeyDestroyedError):
        await asyncio.to_thread(unseal, log_rt.keyring, sealed)
