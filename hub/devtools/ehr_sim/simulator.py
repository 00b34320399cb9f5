"""The EHR simulator (``hub simulate ehr``): a FHIR endpoint and an MLLP endpoint on
127.0.0.1, with configurable faults, for demos and tests.

FHIR (aiohttp): ``POST /fhir/`` takes transaction Bundles (validated, conditional creates
honoured), ``GET /fhir/Task?_lastUpdated=ge…&_count=…`` serves Task searches (paged with a
``next`` link), ``POST /auth/token`` issues client-credential tokens (required when
``require_auth``), ``GET /_stats`` returns the counters. Tasks move through their lifecycle
in the background; each change is stamped in ``Task.lastModified`` with the clinic's
reported time (``meta.lastUpdated`` stays the server's record time, which searches page by).

MLLP: takes REF^I12, ACKs it (AA, or an injected AE/AR), remembers MSH-10 so a resend is
acknowledged without a second referral, and later sends RRI^I12 answers (accepted,
completed, or rejected) to the hub's listener when ``answer_to`` is set, with the clinic's
reported time in MSH-7.

Reported times follow :class:`hub.devtools.ehr_sim.store.Timeline`: the referral's own time
(``Task.authoredOn`` / RF1-7) plus seeded clinical delays (hours to ~3 days to accept, 3 to 20
days to complete), never later than the wall clock — so answers to a simulated month of
referrals fall in that month, and answers to live referrals carry the real time.

Faults (per channel, each a probability per request, drawn from a seeded RNG):
``drop_before`` (close without reading further), ``drop_after`` (store, then close without
answering — the case that tempts a sender into duplicates), ``error`` (AE / HTTP 503,
nothing stored), ``reject`` (AR / HTTP 422 with an OperationOutcome), ``timeout`` (answer
nothing for ``timeout_s``, then close).

Modes (both channels; set in :class:`SimConfig`, at run time with :meth:`EhrSimulator.set_mode`
or ``POST /_mode {"mode": …}``), the faults a delivery worker must survive truthfully:

- ``normal``;
- ``flapping``: up for ``flap_up_s``, then down for ``flap_down_s``, and so on. While down,
  a referral is *stored and the connection dropped without an answer* (the sender cannot
  know it arrived) and every other request is dropped;
- ``hung``: every request is read (a referral stored), then never answered: the connection
  stays open until the client gives up (or the mode changes);
- :meth:`EhrSimulator.hang_referral`: only the FHIR transactions carrying one referral are
  stored and never answered (until :meth:`EhrSimulator.unhang_referral`) — a slow referral
  at the head of a destination's queue.

A correct hub records neither a duplicate nor a ``delivery_failed`` for a referral the EHR
stored: it resends idempotently and asks the EHR (``GET /fhir/ServiceRequest?identifier=``;
an MLLP resend with the same MSH-10) before it records a failure.

History: ``GET /fhir/Task/_history?_since=…&_count=…`` lists every stored Task version,
newest first, each with the ``lastModified`` of its own status change.

A validating server's "not now" (:meth:`EhrSimulator.busy_referral`): the next ``times``
transactions carrying one referral get 409 with an OperationOutcome of code ``conflict``,
nothing stored — a sender must retry them, not record a rejection.

HL7 layouts (``hl7_layout``): ``hub`` answers as the hub's own builders write; ``engine``
as a typical interface engine does (issue 13, finding 8), written here by hand: every RRI^I12
comes in a batch (FHS/BHS … BTS/FTS), in HL7 v2.3, Latin-1 (MSH-18 ``8859/1``), PID-3 with
the clinic's MRN before the hub's pseudonym, a declined answer's note with highlighting and
escaped delimiters; ACKs to REF^I12 are v2.3 ones (error code in MSA-6 and ERR-1), wrapped in
a batch too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import random
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from connectors.core.http import bound_port
from connectors.hl7v2.ack import AckCode, AckError, build_ack, parse_ack
from connectors.hl7v2.codec import Er7, Er7Error, parse_hl7_ts
from connectors.hl7v2.mllp import FrameDecoder, MllpClient, MllpError, frame
from connectors.hl7v2.rri import build_rri_i12
from connectors.referrals.content import REFERRAL_SYSTEM
from hub.devtools.ehr_sim.store import FhirStore, Hl7Store, Lifecycle

log = logging.getLogger(__name__)


@dataclass
class Faults:
    drop_before: float = 0.0
    drop_after: float = 0.0
    error: float = 0.0
    reject: float = 0.0
    timeout: float = 0.0
    timeout_s: float = 2.0

    def draw(self, rng: random.Random) -> str | None:
        r = rng.random()
        for name in ("drop_before", "drop_after", "error", "reject", "timeout"):
            p = getattr(self, name)
            if r < p:
                return name
            r -= p
        return None


Mode = Literal["normal", "flapping", "hung"]
MODES: tuple[Mode, ...] = ("normal", "flapping", "hung")
Hl7Layout = Literal["hub", "engine"]
HL7_LAYOUTS: tuple[Hl7Layout, ...] = ("hub", "engine")
#: the note of a declined answer in the ``engine`` layout, as the clinic wrote it (unescaped)
ENGINE_DECLINE_NOTE = "Declined: no capacity & waitlist full (réorienté)"


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    fhir_port: int = 0  # 0: any free port
    mllp_port: int = 0
    answer_to: tuple[str, int] | None = None  # the hub's MLLP listener for RRI^I12
    fhir_faults: Faults = field(default_factory=Faults)
    mllp_faults: Faults = field(default_factory=Faults)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    require_auth: bool = False
    client_id: str = "cohub"
    client_secret: str = "sim-secret"
    token_ttl_s: int = 300
    seed: int = 1
    tick_s: float = 0.1
    mode: Mode = "normal"
    flap_up_s: float = 1.0
    flap_down_s: float = 1.0
    hl7_layout: Hl7Layout = "hub"


class EhrSimulator:
    """Start with :meth:`start`, stop with :meth:`stop`; :meth:`stats` is the Python API of
    the counters also served at ``GET /_stats``."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = cfg = config or SimConfig()
        self.rng = random.Random(cfg.seed)
        self.fhir = FhirStore(lifecycle=cfg.lifecycle, rng=random.Random(cfg.seed + 1), seed=cfg.seed)
        self.hl7 = Hl7Store(lifecycle=cfg.lifecycle, rng=random.Random(cfg.seed + 2), seed=cfg.seed)
        self.faults_injected: dict[str, int] = {}
        self.fhir_requests = 0
        self.tokens: dict[str, float] = {}
        self.token_requests = 0
        self.rri_sent = 0
        self.rri_acks: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._mllp: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._conns: set[asyncio.Task[None]] = set()
        self._rri_client: MllpClient | None = None
        self.fhir_port = 0
        self.mllp_port = 0
        self.mode: Mode = cfg.mode
        self._mode_since = 0.0
        self.mode_effects: dict[str, int] = {}  # "hung", "flap-stored", "flap-dropped": how often
        self.hung_referrals: set[str] = set()
        self.busy_referrals: dict[str, int] = {}  # referral id -> transient 409s still to give

    # -- lifecycle

    async def start(self) -> None:
        cfg = self.config
        app = web.Application(client_max_size=8 << 20)
        app.router.add_post("/fhir", self._transaction)
        app.router.add_post("/fhir/", self._transaction)
        app.router.add_get("/fhir/Task", self._search_tasks)
        app.router.add_get("/fhir/Task/_history", self._task_history)
        app.router.add_get("/fhir/Task/{id}", self._read_task)
        app.router.add_get("/fhir/ServiceRequest", self._search_service_requests)
        app.router.add_post("/auth/token", self._token)
        app.router.add_get("/_stats", self._stats)
        app.router.add_post("/_mode", self._set_mode)
        self._mode_since = asyncio.get_running_loop().time()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.fhir_port)
        await site.start()
        self.fhir_port = bound_port(site)
        self._mllp = await asyncio.start_server(self._mllp_conn, cfg.host, cfg.mllp_port)
        self.mllp_port = self._mllp.sockets[0].getsockname()[1]
        if cfg.answer_to:
            self._rri_client = MllpClient(cfg.answer_to[0], cfg.answer_to[1], read_timeout=5.0)
        self._tasks.append(asyncio.create_task(self._ticker(), name="ehr-sim-ticker"))

    async def stop(self) -> None:
        for task in [*self._tasks, *self._conns]:
            task.cancel()
        for task in [*self._tasks, *self._conns]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._mllp is not None:
            self._mllp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._mllp.wait_closed(), 2)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._rri_client is not None:
            await self._rri_client.close()

    @property
    def fhir_base_url(self) -> str:
        return f"http://{self.config.host}:{self.fhir_port}/fhir"

    @property
    def token_url(self) -> str:
        return f"http://{self.config.host}:{self.fhir_port}/auth/token"

    def stats(self) -> dict[str, Any]:
        return {
            "fhir": {
                "requests": self.fhir_requests,
                "transactions": self.fhir.transactions,
                "invalid": self.fhir.invalid,
                "referrals": len(self.fhir.referral_ids()),
                "duplicates": self.fhir.duplicates,
                "resends_deduplicated": self.fhir.resends_deduplicated,
                "token_requests": self.token_requests,
                "task_status": self._task_status_counts(),
            },
            "hl7": {
                "received": self.hl7.received,
                "referrals": len(self.hl7.referral_ids()),
                "duplicates": self.hl7.duplicates,
                "resends_deduplicated": self.hl7.resends_deduplicated,
                "rri_sent": self.rri_sent,
                "rri_acks": dict(self.rri_acks),
            },
            "duplicates": self.fhir.duplicates + self.hl7.duplicates,
            "faults_injected": dict(self.faults_injected),
            "mode": self.mode,
            "mode_effects": dict(self.mode_effects),
            "config": {
                "fhir_faults": asdict(self.config.fhir_faults),
                "mllp_faults": asdict(self.config.mllp_faults),
            },
        }

    def received_referral_ids(self) -> set[str]:
        return self.fhir.referral_ids() | self.hl7.referral_ids()

    def _task_status_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.fhir.resources.get("Task", {}).values():
            out[t["status"]] = out.get(t["status"], 0) + 1
        return out

    # -- modes

    def set_mode(self, mode: Mode) -> None:
        """Switch every channel to ``mode`` (a flapping cycle starts up)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        self.mode = mode
        self._mode_since = asyncio.get_running_loop().time()

    def down(self) -> bool:
        """True while the EHR does not answer: hung, or in a flapping cycle's down phase."""
        if self.mode == "hung":
            return True
        if self.mode != "flapping":
            return False
        cfg = self.config
        phase = (asyncio.get_running_loop().time() - self._mode_since) % (cfg.flap_up_s + cfg.flap_down_s)
        return phase >= cfg.flap_up_s

    def hang_referral(self, referral_id: str) -> None:
        """Store, and never answer, every FHIR transaction carrying ``referral_id``."""
        self.hung_referrals.add(referral_id)

    def unhang_referral(self, referral_id: str) -> None:
        self.hung_referrals.discard(referral_id)

    def busy_referral(self, referral_id: str, times: int) -> None:
        """Answer the next ``times`` FHIR transactions carrying ``referral_id`` with 409 and a
        ``conflict`` OperationOutcome (nothing stored): a transient refusal."""
        self.busy_referrals[referral_id] = times

    def _effect(self, name: str) -> None:
        self.mode_effects[name] = self.mode_effects.get(name, 0) + 1

    async def _hang(self, closing: Any) -> None:
        """Answer nothing until the client gives up (``closing()`` true) or the EHR is no
        longer hung; the caller then drops the connection."""
        self._effect("hung")
        while self.mode == "hung" and not closing():
            await asyncio.sleep(0.05)

    async def _hang_mllp(self, reader: asyncio.StreamReader) -> None:
        """:meth:`_hang` for an MLLP connection: read and discard until the client closes."""
        self._effect("hung")
        while self.mode == "hung":
            try:
                if not await asyncio.wait_for(reader.read(65536), 0.05):
                    return
            except TimeoutError:
                continue

    async def _set_mode(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            self.set_mode(body.get("mode"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"mode": self.mode})

    def _fault(self, channel: str, faults: Faults) -> str | None:
        f = faults.draw(self.rng)
        if f:
            key = f"{channel}.{f}"
            self.faults_injected[key] = self.faults_injected.get(key, 0) + 1
        return f

    # -- background: Task lifecycle and RRI answers

    async def _ticker(self) -> None:
        while True:
            now = datetime.now(UTC)
            self.fhir.advance(now)
            if self._rri_client is not None and not self.down():
                for ref, code, at in self.hl7.due_answers(now):
                    if await self._send_rri(ref, code, at):
                        self.hl7.answered(ref, code, at)
            await asyncio.sleep(self.config.tick_s)

    async def _send_rri(self, ref: Any, code: str, at: datetime) -> bool:
        """Send one RRI^I12 stamped (MSH-7) with the clinic's reported time ``at``."""
        assert self._rri_client is not None
        # derived from the seed, the referral and the answer: a resend of one answer keeps its
        # control id, and a clean and a faulted run of the fault suite give the same ids
        basis = f"{self.config.seed}\x1f{ref.referral_id}\x1f{code}"
        cid = "S" + hashlib.sha256(basis.encode()).hexdigest()[:18].upper()
        if self.config.hl7_layout == "engine":
            payload = engine_rri(cid, ref, code, at)
        else:
            payload = build_rri_i12(
                control_id=cid,
                ref_control_id=ref.control_id,
                referral_id=ref.referral_id,
                person=ref.person,
                status_code=code,
                now=at,
                note="Declined: no capacity" if code == "R" else None,
            ).encode()
        try:
            answer = await self._rri_client.exchange(payload)
            ack = parse_ack(answer.decode("utf-8", errors="replace"), cid)
        except (MllpError, ValueError) as exc:
            log.info("simulator: RRI to hub failed (%s); will retry", type(exc).__name__)
            return False
        self.rri_sent += 1
        self.rri_acks[ack.code] = self.rri_acks.get(ack.code, 0) + 1
        return ack.code in ("AA", "AR")

    # -- FHIR

    def _authorized(self, request: web.Request) -> bool:
        if not self.config.require_auth:
            return True
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        expires = self.tokens.get(token)
        return expires is not None and expires > asyncio.get_running_loop().time()

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        cfg = self.config
        basic = request.headers.get("Authorization", "")

        ok = False
        if basic.startswith("Basic "):
            user, _, pw = base64.b64decode(basic[6:]).decode().partition(":")
            ok = user == cfg.client_id and pw == cfg.client_secret
        if form.get("grant_type") != "client_credentials" or not ok:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = asyncio.get_running_loop().time() + cfg.token_ttl_s
        return web.json_response(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": cfg.token_ttl_s,
                "scope": form.get("scope", ""),
            }
        )

    async def _drop(self, request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise asyncio.CancelledError  # aiohttp: the handler ends without an answer

    async def _transaction(self, request: web.Request) -> web.StreamResponse:
        self.fhir_requests += 1
        if not self._authorized(request):
            return _fhir_json(
                401,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "login", "diagnostics": "unauthorized"}],
                },
            )
        if self.down():  # flapping (down) or hung: store what arrives, answer nothing
            with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
                self.fhir.transaction(json.loads(await request.read()), datetime.now(UTC))
            if self.mode == "hung":
                await self._hang(lambda: _client_gone(request))
            else:
                self._effect("flap-stored")
            return await self._drop(request)
        fault = self._fault("fhir", self.config.fhir_faults)
        if fault == "drop_before":
            return await self._drop(request)
        if fault == "timeout":
            await asyncio.sleep(self.config.fhir_faults.timeout_s)
            return await self._drop(request)
        if fault == "error":
            return _fhir_json(
                503,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "transient", "diagnostics": "simulated outage"}],
                },
            )
        try:
            bundle = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _fhir_json(
                400,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "structure", "diagnostics": "body is not JSON"}],
                },
            )
        busy = [rid for rid in _referral_ids(bundle) if self.busy_referrals.get(rid, 0) > 0]
        if busy:
            for rid in busy:
                self.busy_referrals[rid] -= 1
            self._effect("busy")
            return _fhir_json(
                409,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "conflict",
                               "diagnostics": "simulated: version conflict, retry"}],
                },
            )
        if fault == "reject":
            return _fhir_json(
                422,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "error",
                            "code": "business-rule",
                            "diagnostics": "simulated: referral not accepted",
                        }
                    ],
                },
            )
        status, body = self.fhir.transaction(bundle, datetime.now(UTC))
        hung = self.hung_referrals & _referral_ids(bundle)
        if hung:
            self._effect("hung")
            while self.hung_referrals & hung and not _client_gone(request):
                await asyncio.sleep(0.05)
            return await self._drop(request)
        if fault == "drop_after":
            return await self._drop(request)
        return _fhir_json(status, body)

    async def _unavailable(self, request: web.Request) -> web.StreamResponse | None:
        """For a read while the EHR is down: hang (hung) or drop (flapping); None when up."""
        if not self.down():
            return None
        if self.mode == "hung":
            await self._hang(lambda: _client_gone(request))
        else:
            self._effect("flap-dropped")
        return await self._drop(request)

    async def _search_tasks(self, request: web.Request) -> web.StreamResponse:
        if (down := await self._unavailable(request)) is not None:
            return down
        if not self._authorized(request):
            return _fhir_json(
                401, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]}
            )
        q = request.query
        since = None
        raw = q.get("_lastUpdated", "")
        if raw:
            since = datetime.fromisoformat(raw[2:] if raw[:2] in ("ge", "gt") else raw)
        count = min(int(q.get("_count", "100")), 500)
        offset = int(q.get("_offset", "0"))
        tasks, total = self.fhir.search_tasks(since, count, offset)
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "entry": [
                {
                    "fullUrl": f"{self.fhir_base_url}/Task/{t['id']}",
                    "resource": t,
                    "search": {"mode": "match"},
                }
                for t in tasks
            ],
        }
        if offset + count < total:
            nxt = request.url.update_query({"_offset": str(offset + count)})
            bundle["link"] = [{"relation": "next", "url": str(nxt)}]
        return _fhir_json(200, bundle)

    async def _task_history(self, request: web.Request) -> web.StreamResponse:
        """``GET Task/_history?_since=…&_count=…``: every Task version stored at or after
        ``_since``, newest first (a ``history`` Bundle, paged with a ``next`` link)."""
        if (down := await self._unavailable(request)) is not None:
            return down
        if not self._authorized(request):
            return _fhir_json(
                401, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]}
            )
        q = request.query
        since = datetime.fromisoformat(q["_since"]) if q.get("_since") else None
        count = min(int(q.get("_count", "100")), 500)
        offset = int(q.get("_offset", "0"))
        versions, total = self.fhir.task_versions(since, count, offset)
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "history",
            "total": total,
            "entry": [
                {
                    "fullUrl": f"{self.fhir_base_url}/Task/{v['id']}",
                    "resource": v,
                    "request": {"method": "POST" if v["meta"]["versionId"] == "1" else "PUT",
                                "url": f"Task/{v['id']}"},
                    "response": {"status": "201" if v["meta"]["versionId"] == "1" else "200"},
                }
                for v in versions
            ],
        }
        if offset + count < total:
            nxt = request.url.update_query({"_offset": str(offset + count)})
            bundle["link"] = [{"relation": "next", "url": str(nxt)}]
        return _fhir_json(200, bundle)

    async def _search_service_requests(self, request: web.Request) -> web.StreamResponse:
        """``GET ServiceRequest?identifier=system|value``: a search by business identifier."""
        if (down := await self._unavailable(request)) is not None:
            return down
        if not self._authorized(request):
            return _fhir_json(
                401, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]}
            )
        system, _, value = request.query.get("identifier", "").partition("|")
        found = self.fhir.find("ServiceRequest", system, value) if value else None
        return _fhir_json(200, {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 1 if found else 0,
            "entry": [{"fullUrl": f"{self.fhir_base_url}/ServiceRequest/{found['id']}", "resource": found,
                       "search": {"mode": "match"}}] if found else [],
        })

    async def _read_task(self, request: web.Request) -> web.Response:
        task = self.fhir.resources.get("Task", {}).get(request.match_info["id"])
        if task is None:
            return _fhir_json(
                404,
                {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]},
            )
        return _fhir_json(200, task)

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    # -- MLLP

    async def _mllp_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        decoder = FrameDecoder()
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                for payload in decoder.feed(chunk):
                    if self.down():  # flapping (down) or hung: store what arrives, answer nothing
                        await self._on_ref(payload, faults=False)
                        if self.mode == "hung":
                            await self._hang_mllp(reader)
                        else:
                            self._effect("flap-stored")
                        return
                    answer = await self._on_ref(payload)
                    if answer is None:
                        return  # fault: close without answering
                    writer.write(frame(answer))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._conns.discard(task)
            writer.close()

    async def _on_ref(self, payload: bytes, *, faults: bool = True) -> bytes | None:
        now = datetime.now(UTC)
        text = payload.decode("utf-8", errors="replace")
        self.hl7.received += 1
        fault = self._fault("mllp", self.config.mllp_faults) if faults else None
        if fault == "drop_before":
            return None
        if fault == "timeout":
            await asyncio.sleep(self.config.mllp_faults.timeout_s)
            return None
        try:
            m = Er7(text)
        except Er7Error as exc:
            return build_ack("AR", acked_control_id="", now=now, error=AckError("100", str(exc))).encode()
        cid = m.component("MSH", 10)
        ack = engine_ack if self.config.hl7_layout == "engine" else _ack
        previous = self.hl7.seen(cid)
        if previous is not None:  # a resend: same answer, nothing stored again
            return None if fault == "drop_after" else ack(previous, cid, now, "resend")
        if fault == "error":
            return ack("AE", cid, now, "simulated application error")
        if m.component("MSH", 9, 1) != "REF" or not m.component("RF1", 6) or not m.component("PID", 3):
            return ack("AR", cid, now, "not a REF^I12 with RF1-6 and PID-3")
        code: AckCode = "AR" if fault == "reject" else "AA"
        referred_at = parse_hl7_ts(m.component("RF1", 7)) if m.component("RF1", 7) else None
        self.hl7.store(cid, m.component("RF1", 6), m.component("PID", 3), now, code, referred_at)
        if fault == "drop_after":
            return None
        return ack(code, cid, now, "simulated: referral not accepted" if code == "AR" else "")


def _client_gone(request: web.Request) -> bool:
    """The HTTP client closed its connection (it gave up waiting)."""
    return request.transport is None or request.transport.is_closing()


def _referral_ids(bundle: Any) -> set[str]:
    """The referral ids (ServiceRequest business identifiers) a transaction Bundle carries."""
    out = set()
    for entry in (bundle.get("entry") or []) if isinstance(bundle, dict) else []:
        res = entry.get("resource") or {}
        if res.get("resourceType") == "ServiceRequest":
            out |= {i.get("value") for i in res.get("identifier") or [] if i.get("system") == REFERRAL_SYSTEM}
    return out


def _ack(code: AckCode, control_id: str, now: datetime, reason: str) -> bytes:
    error = AckError("207", reason) if code != "AA" else None
    return build_ack(code, acked_control_id=control_id, now=now, trigger="I12", error=error).encode()


def _engine_batch(segments: list[str], control_id: str, at: datetime) -> str:
    """``segments`` (one message) in a file of one batch, as an interface engine sends."""
    ts = at.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return "\r".join([
        f"FHS|^~\\&|EHRSIM|EHR|COHUB|COHUB|{ts}||||F{control_id}",
        f"BHS|^~\\&|EHRSIM|EHR|COHUB|COHUB|{ts}||||B{control_id}",
        *segments,
        "BTS|1",
        "FTS|1",
    ])


def engine_rri(control_id: str, ref: Any, code: str, at: datetime) -> bytes:
    """An RRI^I12 the way an interface engine writes it (see the module docstring), written
    by hand per HL7 v2.3 chapter 11 — independent of the hub's own builder."""
    text = {"A": "Accepted", "R": "Rejected", "C": "Completed", "P": "Pending"}.get(code, code)
    ts = at.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    mrn = "M" + hashlib.sha256(ref.person.encode()).hexdigest()[:8].upper()
    segments = [
        f"MSH|^~\\&|EHRSIM|EHR|COHUB|COHUB|{ts}+0000||RRI^I12|{control_id}|P|2.3||||||8859/1",
        f"MSA|AA|{ref.control_id}",
        f"RF1|{code}^{text}^HL70283|||||{ref.referral_id}^COHUB",
        "PRD|RT^Referred to Provider^HL70286",
        f"PID|1||{mrn}^^^EHR^MR~{ref.person}^^^COHUB^PN||PSEUDONYMIZED",
    ]
    if code == "R":
        segments.append("NTE|1||Declined: \\H\\no capacity\\N\\ \\T\\ waitlist full (réorienté)")
    return _engine_batch(segments, control_id, at).encode("latin-1")


def engine_ack(code: AckCode, control_id: str, now: datetime, reason: str) -> bytes:
    """A v2.3 ACK (error code in MSA-6 and ERR-1) in a batch, written by hand."""
    ts = now.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    ack_id = "K" + hashlib.sha256(f"{control_id}\x1f{code}".encode()).hexdigest()[:18].upper()
    msa = f"MSA|{code}|{control_id}"
    segments = [f"MSH|^~\\&|EHRSIM|EHR|COHUB|COHUB|{ts}||ACK^I12|{ack_id}|P|2.3"]
    if code == "AA":
        segments.append(msa)
    else:
        segments += [f"{msa}|{reason}|||207^Application internal error^HL70357",
                     "ERR|^^^207&Application internal error&HL70357"]
    return _engine_batch(segments, ack_id, now).encode("latin-1")


def _fhir_json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/fhir+json")
