"""The PKCS#11 token that holds per-person (and per-incident) key-encryption keys.

Erasure must survive a forensic reading of the database: a key that PostgreSQL stored
(even wrapped by ``master.key``) stays in dead heap tuples, the WAL and every base backup.
So the secret that opens a person's data key lives on a PKCS#11 token — SoftHSM2 in
development and CI, an HSM or a cloud KMS speaking PKCS#11 in production — and
destroying it is ``C_DestroyObject`` on the token.

Design (see ``docs/operators.md``, "Key store"):

- each key id has one **token key**: a non-extractable, sensitive AES-256 secret-key object
  (``CKA_TOKEN``, ``CKA_ID`` = 16 random bytes, ``CKA_LABEL`` = ``<namespace>/<key id>``)
  that only encrypts and decrypts on the token;
- the data key itself is random, encrypted **on the token** under its token key (AES-GCM,
  AAD = key id); PostgreSQL stores only that ciphertext and the ``CKA_ID``. Nothing the
  master key can open is stored;
- :meth:`Token.destroy` destroys the object: the ciphertext in PostgreSQL (and in every
  dead tuple, WAL segment or backup) is then noise. SoftHSM2 keeps each object in its own
  file under the token directory and unlinks that file on ``C_DestroyObject``.

The library is loaded once per process (``C_Initialize``); one logged-in session per
(module, token) is shared by every :class:`Token` of the process. Every PKCS#11 call runs
on one dedicated thread of the process (:data:`_WORKER`): that serialises the shared
session (not safe for concurrent use) and keeps the module's own OpenSSL state (SoftHSM2
leaves engine errors on the calling thread's OpenSSL error queue, which would fail the
next TLS read of a PostgreSQL connection on that thread) away from the event loops.
Every call is short (the token is local); callers on an event loop may call it inline.

Development: the module defaults to SoftHSM2's, its configuration is generated under
``state_dir/softhsm`` (``SOFTHSM2_CONF``) and :func:`ensure_dev_token` initialises the token
on first use with a PIN generated under ``state_dir/keys/token.pin``. Production requires
``keystore.module`` and ``keystore.pin_file`` (a missing, empty or short PIN is refused).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import NoSuchToken, ObjectHandleInvalid, PKCS11Error, UserAlreadyLoggedIn
from pkcs11.mechanisms import GCMParams

from hub.kernel.errors import ConfigError, InfraError
from hub.kernel.keys import secret_text
from hub.kernel.settings import Settings

#: where Debian's ``softhsm2`` package installs its PKCS#11 module
SOFTHSM_MODULES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
)
PIN_FILE = "token.pin"
MIN_PIN = 8
NONCE = 12


#: every token key: a secret that never leaves the token and only encrypts / decrypts
KEY_TEMPLATE = {
    Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True, Attribute.WRAP: False, Attribute.UNWRAP: False,
    Attribute.PRIVATE: True, Attribute.MODIFIABLE: False,
}


class TokenError(InfraError):
    """The token is missing, misconfigured or refused an operation."""


@dataclass(frozen=True)
class TokenConfig:
    """Where the token is: its PKCS#11 module, label and PIN (resolved from settings)."""

    module: Path
    label: str
    pin: str
    softhsm_conf: Path | None  # development only: the generated SoftHSM2 configuration


def softhsm_module() -> Path | None:
    """The installed SoftHSM2 module, or None."""
    return next((p for p in SOFTHSM_MODULES if p.exists()), None)


def softhsm_dir(settings: Settings) -> Path:
    return settings.state_dir / "softhsm"


def token_config(settings: Settings) -> TokenConfig:
    """The token of ``settings``. Production refuses a missing module or a missing, empty or
    short PIN (:class:`ConfigError`); development defaults to SoftHSM2 under ``state_dir``."""
    ks = settings.keystore
    if settings.is_development:
        module = ks.module or softhsm_module()
        if module is None:
            raise TokenError(
                "the key store needs a PKCS#11 token: install SoftHSM2 (`hub infra setup`, or "
                "apt-get install -y softhsm2) or set keystore.module"
            )
        pin = (
            ks.pin_file.read_text(encoding="utf-8").strip()
            if ks.pin_file is not None
            else secret_text(settings, PIN_FILE)
        )
        conf = None if ks.module is not None else softhsm_dir(settings) / "softhsm2.conf"
        return TokenConfig(module, ks.token_label, pin, conf)
    if ks.module is None:
        raise ConfigError(
            "keystore.module (HUB_KEYSTORE__MODULE) is required in production: the PKCS#11 library"
        )
    if ks.pin_file is None:
        raise ConfigError(
            "keystore.pin_file (HUB_KEYSTORE__PIN_FILE) is required in production: the token PIN"
        )
    try:
        pin = ks.pin_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"keystore.pin_file {ks.pin_file}: cannot read the token PIN ({exc.strerror})"
        ) from None
    if len(pin) < MIN_PIN:
        raise ConfigError(
            f"keystore.pin_file {ks.pin_file}: the token PIN is empty or shorter than {MIN_PIN}"
        )
    return TokenConfig(ks.module, ks.token_label, pin, None)


def write_softhsm_conf(settings: Settings) -> Path:
    """The development SoftHSM2 configuration (tokens under ``state_dir/softhsm/tokens``)."""
    base = softhsm_dir(settings)
    tokens = base / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    conf = base / "softhsm2.conf"
    text = (
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)
    return conf


def ensure_dev_token(settings: Settings) -> TokenConfig:
    """Development: generate the SoftHSM2 configuration and initialise the token once
    (``softhsm2-util --init-token``; the SO PIN is random and not kept). Idempotent and safe
    against concurrent processes (a file lock). Production: only resolves the config."""
    cfg = token_config(settings)
    if cfg.softhsm_conf is None:
        return cfg
    conf = write_softhsm_conf(settings)
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read by SoftHSM2 at C_Initialize
    util = shutil.which("softhsm2-util")
    if util is None:
        raise TokenError("softhsm2-util is not installed: run `hub infra setup` (installs softhsm2)")
    env = {**os.environ, "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"]}
    with open(softhsm_dir(settings) / "init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shown = subprocess.run([util, "--show-slots"], capture_output=True, text=True, env=env, check=False)
        if _has_label(shown.stdout, cfg.label):
            return cfg
        made = subprocess.run(
            [util, "--init-token", "--free", "--label", cfg.label, "--pin", cfg.pin,
             "--so-pin", secrets.token_hex(16)],
            capture_output=True, text=True, env=env, check=False,
        )
        if made.returncode != 0:
            raise TokenError(f"could not initialise the development token: {made.stderr.strip()[:300]}")
    return cfg


def _has_label(show_slots: str, label: str) -> bool:
    return any(
        line.strip().startswith("Label:") and line.split(":", 1)[1].strip() == label
        for line in show_slots.splitlines()
    )


T = TypeVar("T")

#: the one thread every PKCS#11 call of the process runs on (see the module docstring)
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pkcs11")


def _on_token_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on :data:`_WORKER` and wait; PKCS#11 failures become :class:`TokenError`."""

    def guarded() -> T:
        try:
            return fn()
        except PKCS11Error as exc:
            raise TokenError(f"the token refused the operation ({type(exc).__name__})") from None

    if threading.current_thread().name.startswith("pkcs11"):
        return guarded()
    return _WORKER.submit(guarded).result()


async def _on_token_thread_async(fn: Callable[[], T]) -> T:
    """:func:`_on_token_thread` for a coroutine: the event loop is not blocked meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(_WORKER, lambda: _on_token_thread(fn))


class _Shared:
    """The process's logged-in session per (module, label), reference counted."""

    lock = threading.Lock()
    sessions: dict[tuple[str, str], tuple[Any, int]] = {}
    #: CKA_ID → object of the shared session (a C_FindObjects is a scan of every object:
    #: one enumeration fills this for all of them; a stale entry is dropped on use)
    handles: dict[tuple[str, str], dict[bytes, Any]] = {}


class Token:
    """A handle on the key-holding token. ``open()`` / ``close()``; every method is
    synchronous, short, thread-safe, and raises :class:`TokenError` when the token refuses."""

    def __init__(self, cfg: TokenConfig, namespace: str) -> None:
        self.cfg = cfg
        self.namespace = namespace
        self._key = (str(cfg.module), cfg.label)
        self._open = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Token:
        return cls(ensure_dev_token(settings), settings.kafka.topic_prefix)

    # -- lifecycle

    def open(self) -> None:
        if self._open:
            return
        _on_token_thread(self._open_session)
        self._open = True

    def _open_session(self) -> None:
        with _Shared.lock:
            held = _Shared.sessions.get(self._key)
            if held is None:
                if self.cfg.softhsm_conf is not None:
                    os.environ["SOFTHSM2_CONF"] = str(self.cfg.softhsm_conf)
                try:
                    token = pkcs11.lib(str(self.cfg.module)).get_token(token_label=self.cfg.label)
                except NoSuchToken:
                    raise TokenError(
                        f"no PKCS#11 token labelled {self.cfg.label!r} in {self.cfg.module}"
                    ) from None
                except (PKCS11Error, RuntimeError, OSError) as exc:
                    raise TokenError(f"cannot load the PKCS#11 module {self.cfg.module}: {exc!r}") from None
                try:
                    session = token.open(user_pin=self.cfg.pin, rw=True)
                except UserAlreadyLoggedIn:
                    session = token.open(rw=True)
                except PKCS11Error as exc:
                    raise TokenError(f"the token refused the login ({type(exc).__name__})") from None
                held = (session, 0)
            _Shared.sessions[self._key] = (held[0], held[1] + 1)

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        with _Shared.lock:
            session, refs = _Shared.sessions[self._key]
            if refs > 1:
                _Shared.sessions[self._key] = (session, refs - 1)
                return
            del _Shared.sessions[self._key]
            _Shared.handles.pop(self._key, None)
        _on_token_thread(session.close)

    # -- keys

    def label(self, kid: str) -> str:
        return f"{self.namespace}/{kid}"

    def create(self, kid: str) -> bytes:
        """A new token key for ``kid``; returns its ``CKA_ID``."""
        token_id = os.urandom(16)

        def run() -> None:
            self._session().generate_key(
                KeyType.AES, 256, id=token_id, label=self.label(kid), store=True, template=KEY_TEMPLATE
            )

        _on_token_thread(run)
        return token_id

    async def create_wrapped(self, items: list[tuple[str, bytes]]) -> list[tuple[bytes, bytes]]:
        """For each (key id, data key): a new token key and the data key encrypted under it
        (``CKA_ID``, nonce ‖ AES-GCM); one job on the token thread for the whole batch."""

        def run() -> list[tuple[bytes, bytes]]:
            out = []
            for kid, data_key in items:
                token_id, nonce = os.urandom(16), os.urandom(NONCE)
                key = self._session().generate_key(
                    KeyType.AES, 256, id=token_id, label=self.label(kid), store=True, template=KEY_TEMPLATE,
                )
                self._cache()[token_id] = key
                params = GCMParams(nonce, kid.encode(), 128)
                sealed = key.encrypt(data_key, mechanism=Mechanism.AES_GCM, mechanism_param=params)
                out.append((token_id, nonce + bytes(sealed)))
            return out

        return await _on_token_thread_async(run)

    async def decrypt_many(self, rows: list[tuple[bytes, str, bytes]]) -> list[bytes | None]:
        """:meth:`decrypt` of each (token id, key id, blob), one job on the token thread."""
        return await _on_token_thread_async(lambda: [self.decrypt(t, k, b) for t, k, b in rows])

    def encrypt(self, token_id: bytes, kid: str, plaintext: bytes) -> bytes:
        """nonce ‖ AES-GCM(token key, plaintext, aad = key id), computed on the token."""
        nonce = os.urandom(NONCE)

        def run() -> bytes:
            key = self._find(token_id)
            if key is None:
                raise TokenError("the token key vanished before use")
            params = GCMParams(nonce, kid.encode(), 128)
            return nonce + bytes(key.encrypt(plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params))

        return _on_token_thread(run)

    def decrypt(self, token_id: bytes, kid: str, blob: bytes) -> bytes | None:
        """The plaintext, or None when the token key is gone (destroyed)."""

        def run() -> bytes | None:
            key = self._find(token_id)
            if key is None:
                return None
            params = GCMParams(blob[:NONCE], kid.encode(), 128)
            try:
                return bytes(key.decrypt(blob[NONCE:], mechanism=Mechanism.AES_GCM, mechanism_param=params))
            except ObjectHandleInvalid:  # destroyed by another process since it was cached
                self._cache().pop(token_id, None)
                return None
            except PKCS11Error:
                raise TokenError(f"the data key of {kid} does not open under its token key") from None

        return _on_token_thread(run)

    def destroy(self, kid: str, token_id: bytes | None = None) -> int:
        """Destroy every token key of ``kid`` (its ``CKA_ID`` and any other object with its
        label, e.g. one made by a process that lost the creation race). Returns the count."""

        def run() -> int:
            query = {Attribute.LABEL: self.label(kid), Attribute.CLASS: ObjectClass.SECRET_KEY}
            objs = {o.handle: o for o in self._session().get_objects(query)}
            found = None if token_id is None else self._find(token_id)
            if found is not None:
                objs[found.handle] = found
            for o in objs.values():
                self._forget(o)
                o.destroy()
            return len(objs)

        return _on_token_thread(run)

    def destroy_id(self, token_id: bytes) -> None:
        """Destroy one token key by ``CKA_ID`` (the loser of a creation race)."""

        def run() -> None:
            found = self._find(token_id)
            if found is not None:
                self._forget(found)
                found.destroy()

        _on_token_thread(run)

    def destroy_namespace(self) -> list[str]:
        """Destroy every token key of this namespace (labels ``<namespace>/…``): the end of a
        test namespace or of a decommissioned deployment. Returns their labels."""

        def run() -> list[str]:
            prefix = self.namespace + "/"
            objs = [
                o for o in self._session().get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
                if str(o[Attribute.LABEL]).startswith(prefix)
            ]
            labels = sorted(str(o[Attribute.LABEL]) for o in objs)
            for o in objs:
                self._forget(o)
                o.destroy()
            return labels

        return _on_token_thread(run)

    # -- internals (on the token thread)

    def _cache(self) -> dict[bytes, Any]:
        return _Shared.handles.setdefault(self._key, {})

    def _find(self, token_id: bytes) -> Any:
        """The token key with ``CKA_ID`` ``token_id`` (None: not on the token). A miss
        enumerates every secret key once and caches them all."""
        cache = self._cache()
        hit = cache.get(token_id)
        if hit is not None:
            return hit
        cache.clear()
        for obj in self._session().get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
            cache[bytes(obj[Attribute.ID])] = obj
        return cache.get(token_id)

    def _forget(self, obj: Any) -> None:
        cache = self._cache()
        for tid in [t for t, o in cache.items() if o.handle == obj.handle]:
            del cache[tid]

    def _session(self) -> Any:
        if not self._open:
            raise TokenError("the token is not open (Token.open())")
        return _Shared.sessions[self._key][0]
