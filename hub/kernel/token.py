"""The PKCS#11 token that holds the key store's **epoch keys**.

Erasure must survive a forensic reading of the database: a key that PostgreSQL stored
(even wrapped by ``master.key``) stays in dead heap tuples, the WAL and every base backup.
So every secret that opens a data key lives on a PKCS#11 token — SoftHSM2 in development
and CI, an HSM or a cloud KMS speaking PKCS#11 in production — where destruction is real
(``C_DestroyObject``).

Design (see ``docs/operators.md``, "Key store"; the rotation is
:class:`hub.kernel.keystore.TokenKeyring`'s):

- a namespace (topic prefix) has **one current epoch key** on the token: a non-extractable,
  sensitive AES-256 secret-key object labelled ``<namespace>/epoch/<n>`` that only encrypts
  and decrypts on the token; during a rotation (an erasure) the previous one exists too,
  until the rotation has committed. A handful of objects per namespace, whatever the number
  of persons: a token's object store costs O(objects) per operation (SoftHSM2) and HSM
  partitions cap their objects;
- every data key is encrypted on the token under the current epoch key; PostgreSQL keeps
  the ciphertext and the epoch number. Destroying epoch ``n`` after every live key was
  re-encrypted under ``n + 1`` makes every older copy (dead tuples, WAL, backups) noise.

The library is loaded once per process (``C_Initialize``); one logged-in session per
(module, token) is shared by every :class:`Token` of the process. Every PKCS#11 call runs
on one dedicated thread of the process (:data:`_WORKER`): that serialises the shared
session (not safe for concurrent use) and keeps the module's own OpenSSL state (SoftHSM2
leaves engine errors on the calling thread's OpenSSL error queue, which would fail the
next TLS read of a PostgreSQL connection on that thread) away from the event loops.
Batches (:meth:`Token.encrypt_async`, :meth:`Token.decrypt_async`) are one job on that
thread; single calls are short and may run inline.

Development: the module defaults to SoftHSM2's, its configuration is generated under
``state_dir/softhsm`` (``SOFTHSM2_CONF``) and :func:`ensure_dev_token` initialises the token
on first use with a PIN generated under ``state_dir/keys/token.pin`` (a development token of
an older layout — one object per person — is deleted and initialised again: its data is
disposable). Production requires ``keystore.module`` and ``keystore.pin_file`` (a missing,
empty or short PIN is refused).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import (
    KeyHandleInvalid,
    NoSuchToken,
    ObjectHandleInvalid,
    PKCS11Error,
    UserAlreadyLoggedIn,
)
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
log = logging.getLogger(__name__)

PIN_FILE = "token.pin"
#: written next to a development token initialised for epoch keys (see ensure_dev_token)
LAYOUT = "epoch-keys-v1"
MIN_PIN = 8
NONCE = 12


#: ``<namespace>/epoch/<n>``: the label of a namespace's epoch key
EPOCH_LABEL = re.compile(r"^(?P<namespace>.+)/epoch/(?P<epoch>[0-9]+)$")

#: every epoch key: a secret that never leaves the token and only encrypts / decrypts
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
    (``softhsm2-util --init-token``; the SO PIN is random and not kept). A token of the
    label that was not initialised for epoch keys (no ``<label>.layout`` marker: the older
    one-object-per-person layout, thousands of objects that slow every operation) is
    deleted and initialised again: development data is disposable, and no row of the
    epoch layout refers to those objects. Idempotent and safe against concurrent processes
    (a file lock). Production: only resolves the config."""
    cfg = token_config(settings)
    if cfg.softhsm_conf is None:
        return cfg
    conf = write_softhsm_conf(settings)
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read by SoftHSM2 at C_Initialize
    util = shutil.which("softhsm2-util")
    if util is None:
        raise TokenError("softhsm2-util is not installed: run `hub infra setup` (installs softhsm2)")
    env = {**os.environ, "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"]}
    marker = softhsm_dir(settings) / f"{cfg.label}.layout"

    def softhsm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([util, *args], capture_output=True, text=True, env=env, check=False)

    tokens = softhsm_dir(settings) / "tokens"
    with open(softhsm_dir(settings) / "init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marked = marker.exists() and marker.read_text(encoding="utf-8").strip() == LAYOUT
        for attempt in range(LISTING_ATTEMPTS):
            listing = softhsm("--show-slots")
            if listing.returncode != 0:
                raise TokenError(f"softhsm2-util --show-slots failed: {listing.stderr.strip()[:300]}")
            action = dev_token_action(
                label_count(listing.stdout, cfg.label), marked, any(tokens.glob("*/token.object")),
                final=attempt == LISTING_ATTEMPTS - 1,
            )
            if action != "look again":
                break
            time.sleep(LISTING_PAUSE_S * (attempt + 1))  # another process is writing a token file
        if action == "ready":
            return cfg
        if action == "missing":
            raise TokenError(
                f"the development token {cfg.label!r} is initialised (its layout marker is there) but "
                f"SoftHSM2 did not list it in {LISTING_ATTEMPTS} readings; try again"
            )
        if action == "duplicated":
            raise TokenError(
                f"more than one development token is labelled {cfg.label!r} under {tokens}: delete "
                f"{softhsm_dir(settings)} (development keys only) and start again"
            )
        if action == "reinitialise":
            gone = softhsm("--delete-token", "--token", cfg.label)
            if gone.returncode != 0:
                raise TokenError(f"could not delete the old development token: {gone.stderr.strip()[:300]}")
            log.warning("deleted the development token %r of the per-person layout; initialising it "
                        "for epoch keys (development data keyed under it is unreadable)", cfg.label)
        so_pin = secrets.token_hex(16)
        made = softhsm("--init-token", "--free", "--label", cfg.label, "--pin", cfg.pin, "--so-pin", so_pin)
        if made.returncode != 0:
            raise TokenError(f"could not initialise the development token: {made.stderr.strip()[:300]}")
        marker.write_text(LAYOUT + "\n", encoding="utf-8")
    return cfg


#: readings of ``softhsm2-util --show-slots`` before a token known to exist is declared
#: missing, and the pause before the n-th one (``n * LISTING_PAUSE_S``)
LISTING_ATTEMPTS = 8
LISTING_PAUSE_S = 0.05


TokenAction = Literal["ready", "reinitialise", "initialise", "look again", "missing", "duplicated"]


def dev_token_action(listed: int, marked: bool, any_token: bool, *, final: bool) -> TokenAction:
    """What :func:`ensure_dev_token` does with the development token (pure), from how many
    slots a ``--show-slots`` reading lists with the label, whether the epoch-layout marker
    is there, whether any token exists on disk, and whether this is the last reading:

    - ``"ready"``: listed once, marked;
    - ``"reinitialise"``: listed once, not marked (the per-person layout): delete, initialise;
    - ``"initialise"``: listed nowhere and no token on disk (first use, tokens removed), or,
      at the last reading, an unmarked token on disk that never lists with the label
      (another label, a process killed half-way through initialising);
    - ``"look again"``: not listed although a token exists on disk. SoftHSM2 reads a token's
      file while another process rewrites it and then lists the slot as an uninitialised
      token with an empty label (measured: 6 of 300 readings while two processes created
      keys). Initialising then makes a second token of the label, and every later
      ``get_token`` fails with ``MultipleTokensReturned``;
    - ``"missing"``: marked, on disk, and still not listed at the last reading;
    - ``"duplicated"``: listed more than once (what that race left)."""
    if listed > 1:
        return "duplicated"
    if listed == 1:
        return "ready" if marked else "reinitialise"
    if not any_token:
        return "initialise"
    if not final:
        return "look again"
    return "missing" if marked else "initialise"


def label_count(show_slots: str, label: str) -> int:
    """How many slots of a ``--show-slots`` listing hold a token labelled ``label``."""
    return sum(
        1
        for line in show_slots.splitlines()
        if line.strip().startswith("Label:") and line.split(":", 1)[1].strip() == label
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


def _label(obj: Any) -> str | None:
    """The label of an object a scan of the whole token found, or None when it was
    destroyed since (by another process: namespaces share the token, and a scan reads
    every object's label after finding it)."""
    try:
        return str(obj[Attribute.LABEL])
    except (ObjectHandleInvalid, KeyHandleInvalid):
        return None


class _Shared:
    """The process's logged-in session per (module, label), reference counted."""

    lock = threading.Lock()
    sessions: dict[tuple[str, str], tuple[Any, int]] = {}
    #: label → key object of the shared session (a stale entry — the object was destroyed,
    #: perhaps by another process — is dropped on use and looked up again)
    handles: dict[tuple[str, str], dict[str, Any]] = {}


class Token:
    """A handle on the key-holding token for one namespace's epoch keys. ``open()`` /
    ``close()``; every method is thread-safe and raises :class:`TokenError` when the token
    refuses. Epoch numbers are positive integers chosen by the caller (the keyring)."""

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

    # -- epoch keys

    def epoch_label(self, epoch: int) -> str:
        return f"{self.namespace}/epoch/{epoch}"

    def epochs(self) -> list[int]:
        """The epoch numbers of this namespace's keys on the token, ascending."""

        def run() -> list[int]:
            return sorted({n for n, _ in self._namespace_objects()})

        return _on_token_thread(run)

    def has_epoch(self, epoch: int) -> bool:
        return _on_token_thread(lambda: self._find(epoch) is not None)

    def create_epoch(self, epoch: int) -> None:
        """A new epoch key ``epoch``. An object already labelled so (left by a rotation that
        crashed before committing; no row refers to it) is destroyed first, so a label
        names one object."""

        def run() -> None:
            self._destroy(epoch)
            self._cache()[self.epoch_label(epoch)] = self._session().generate_key(
                KeyType.AES, 256, id=os.urandom(16), label=self.epoch_label(epoch), store=True,
                template=KEY_TEMPLATE,
            )

        _on_token_thread(run)

    def destroy_epoch(self, epoch: int) -> bool:
        """``C_DestroyObject`` of epoch key ``epoch``; False when it was not on the token."""
        return _on_token_thread(lambda: self._destroy(epoch) > 0)

    def encrypt(self, epoch: int, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        """For each (aad, plaintext): nonce ‖ AES-GCM(epoch key, plaintext, aad), computed on
        the token. A missing epoch key is a :class:`TokenError`."""

        def op(key: Any) -> list[bytes]:
            out = []
            for aad, plaintext in items:
                nonce = os.urandom(NONCE)
                params = GCMParams(nonce, aad, 128)
                sealed = key.encrypt(plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params)
                out.append(nonce + bytes(sealed))
            return out

        sealed = _on_token_thread(lambda: self._use(epoch, op))
        if sealed is None:
            raise TokenError(f"epoch key {self.epoch_label(epoch)} is not on the token")
        return sealed

    def decrypt(self, epoch: int, items: Sequence[tuple[bytes, bytes]]) -> list[bytes] | None:
        """For each (aad, blob of :meth:`encrypt`): the plaintext; None when epoch key
        ``epoch`` is not on the token (destroyed, perhaps by another process meanwhile). A
        blob that does not open is a :class:`TokenError`."""

        def op(key: Any) -> list[bytes]:
            out = []
            for aad, blob in items:
                params = GCMParams(blob[:NONCE], aad, 128)
                try:
                    plain = key.decrypt(blob[NONCE:], mechanism=Mechanism.AES_GCM, mechanism_param=params)
                except (ObjectHandleInvalid, KeyHandleInvalid):
                    raise
                except PKCS11Error:
                    raise TokenError(f"a ciphertext does not open under {self.epoch_label(epoch)}") from None
                out.append(bytes(plain))
            return out

        return _on_token_thread(lambda: self._use(epoch, op))

    async def encrypt_async(self, epoch: int, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        """:meth:`encrypt` as one job on the token thread; the event loop runs meanwhile."""
        return await _on_token_thread_async(lambda: self.encrypt(epoch, items))

    async def decrypt_async(self, epoch: int, items: Sequence[tuple[bytes, bytes]]) -> list[bytes] | None:
        """:meth:`decrypt` as one job on the token thread; the event loop runs meanwhile."""
        return await _on_token_thread_async(lambda: self.decrypt(epoch, items))

    def destroy_namespace(self) -> list[str]:
        """Destroy every key of this namespace (labels ``<namespace>/…``): the end of a
        test namespace or of a decommissioned deployment. Returns their labels."""

        def run() -> list[str]:
            prefix = self.namespace + "/"
            keys = self._session().get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
            objs = [(o, label) for o in keys if (label := _label(o)) is not None and label.startswith(prefix)]
            labels = sorted(label for _, label in objs)
            for o, _ in objs:
                o.destroy()
            cache = self._cache()
            for label in labels:
                cache.pop(label, None)
            return labels

        return _on_token_thread(run)

    # -- internals (on the token thread)

    def _cache(self) -> dict[str, Any]:
        return _Shared.handles.setdefault(self._key, {})

    def _find(self, epoch: int) -> Any:
        """The key object of ``epoch`` (None: not on the token). Cached by label; a
        cached object destroyed since is noticed by its use (ObjectHandleInvalid)."""
        label = self.epoch_label(epoch)
        cache = self._cache()
        hit = cache.get(label)
        if hit is not None:
            return hit
        found = self._labelled(label)
        if not found:
            return None
        cache[label] = found[0]
        return found[0]

    def _use(self, epoch: int, op: Callable[[Any], T]) -> T | None:
        """``op(key object of epoch)``, or None when the epoch key is not on the token. A
        cached object destroyed since (ObjectHandleInvalid on use) is looked up again."""
        for _ in (0, 1):
            key = self._find(epoch)
            if key is None:
                return None
            try:
                return op(key)
            except (ObjectHandleInvalid, KeyHandleInvalid):
                self._cache().pop(self.epoch_label(epoch), None)
        return None

    def _destroy(self, epoch: int) -> int:
        """Destroy every object labelled as epoch ``epoch``; returns how many there were."""
        label = self.epoch_label(epoch)
        self._cache().pop(label, None)
        objs = self._labelled(label)
        for o in objs:
            o.destroy()
        return len(objs)

    def _labelled(self, label: str) -> list[Any]:
        query = {Attribute.LABEL: label, Attribute.CLASS: ObjectClass.SECRET_KEY}
        return list(self._session().get_objects(query))

    def _namespace_objects(self) -> list[tuple[int, Any]]:
        """(epoch, object) of every epoch key of this namespace on the token."""
        out = []
        for obj in self._session().get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
            label = _label(obj)
            m = EPOCH_LABEL.match(label) if label is not None else None
            if m and m["namespace"] == self.namespace:
                out.append((int(m["epoch"]), obj))
        return out

    def _session(self) -> Any:
        if not self._open:
            raise TokenError("the token is not open (Token.open())")
        return _Shared.sessions[self._key][0]
