"""``python -m bench.producers``: aiokafka against confluent-kafka (librdkafka) on the same
bytes, the question of issue 14's "faster producer" item.

Both producers are configured with the event log's guarantees (idempotence, ``acks=all``,
the log's batch size and linger, a bounded delivery time) and the connection the client
factory gives every hub client (the dev broker: SASL_SSL, SCRAM-SHA-512, the development
CA). They send the same records (the bench's synthetic ``CallReceived`` envelopes with
their key and ``ce_id`` / ``ce_type`` headers) to one fresh topic each, in two shapes:

- ``batches``: the shape of ``EventLog.append`` — send a batch, await all of its
  acknowledgements, next batch;
- ``pipelined``: 4 such batches in flight at once (what the pipelined ingest does).

confluent-kafka is measured bridged per record (a future per record, as aiokafka's
``send`` gives) and per batch (one future per batch, resolved from the delivery callbacks
with the offsets in order: what an adoption by ``EventLog`` would use).

confluent-kafka is not a dependency of the hub: this module runs only when it can be
imported (``pip install --target DIR confluent-kafka`` and ``PYTHONPATH=DIR``); it is
asyncio-bridged the way an adoption would have to be (``produce`` in the loop, a thread
serving ``poll`` and resolving the futures). Prints one line per producer and shape with
records/s, CPU-seconds of this process, and the ratio to aiokafka.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

try:
    import confluent_kafka  # type: ignore[import-not-found]
except ImportError:  # not a dependency of the hub: the comparison runs only where it is installed
    confluent_kafka = None

from bench.phases import create_topic, synthetic_calls, warm_producer
from bench.workspace import Workspace
from hub.kernel.kafka import KafkaClients
from hub.kernel.log import PRODUCER_BATCH_BYTES, record_headers
from hub.kernel.settings import KafkaSettings, get_settings

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


def librdkafka_config(kafka: KafkaSettings, role: str) -> dict[str, Any]:
    """The librdkafka configuration equal to the client factory's producer: same
    connection, idempotence, acks=all, batch size, linger, bounded delivery."""
    clients = KafkaClients(kafka)
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap,
        "client.id": clients.client_id(role),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": PRODUCER_BATCH_BYTES,
        "delivery.timeout.ms": 30_000,
        "security.protocol": kafka.security_protocol,
    }
    if kafka.uses_tls:
        cafile = kafka.cafile()
        if cafile is not None:
            conf["ssl.ca.location"] = str(cafile)
    if kafka.uses_sasl:
        conf["sasl.mechanisms"] = kafka.sasl_mechanism
        conf["sasl.username"] = kafka.username
        conf["sasl.password"] = kafka.sasl_password()
    return conf


class BridgedProducer:
    """confluent-kafka's Producer behind an asyncio ``send`` returning a future (a poll
    thread delivers the callbacks into the loop)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        if confluent_kafka is None:
            raise SystemExit("confluent-kafka is not importable: pip install --target DIR confluent-kafka, "
                             "then PYTHONPATH=DIR python -m bench.producers")
        self.producer = confluent_kafka.Producer(conf)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._thread.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.producer.flush, 30)
        self._stop.set()
        self._thread.join()

    def send(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> asyncio.Future:
        fut: asyncio.Future = self.loop.create_future()

        def done(err: Any, msg: Any) -> None:
            if err is not None:
                self.loop.call_soon_threadsafe(fut.set_exception, RuntimeError(str(err)))
            else:
                self.loop.call_soon_threadsafe(fut.set_result, msg.offset())

        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=done)
                return fut
            except BufferError:  # the local queue is full: let the poll thread drain it
                self.producer.poll(0.01)


    def send_batch(self, topic: str, batch: Sequence[Record]) -> asyncio.Future:
        """Produce a batch; ONE future, resolved (with the offsets, in order) once every
        record of it is delivered: one hand-over to the loop per batch, not per record."""
        fut: asyncio.Future = self.loop.create_future()
        offsets: list[int | None] = [None] * len(batch)
        left = [len(batch)]
        errors: list[str] = []

        def on(i: int) -> Callable[[Any, Any], None]:
            def done(err: Any, msg: Any) -> None:  # in the poll thread
                if err is not None:
                    errors.append(str(err))
                else:
                    offsets[i] = msg.offset()
                left[0] -= 1
                if left[0] == 0:
                    if errors:
                        self.loop.call_soon_threadsafe(fut.set_exception, RuntimeError(errors[0]))
                    else:
                        self.loop.call_soon_threadsafe(fut.set_result, offsets)
            return done

        for i, (value, key, headers) in enumerate(batch):
            while True:
                try:
                    self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on(i))
                    break
                except BufferError:
                    self.producer.poll(0.01)
        return fut


async def aiokafka_send(producer: AIOKafkaProducer) -> Callable[..., Any]:
    async def send(topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> asyncio.Future:
        return await producer.send(topic, value=value, key=key, headers=headers)

    return send


async def run_shape(send: Callable[..., Any], topic: str, batches: Sequence[Sequence[Record]], depth: int,
                    awaits_send: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to send every batch with ``depth`` batches in flight."""
    gate = asyncio.Semaphore(depth)

    async def one(batch: Sequence[Record]) -> None:
        async with gate:
            futures = []
            for value, key, headers in batch:
                f = send(topic, value, key, headers)
                futures.append(await f if awaits_send else f)
            await asyncio.gather(*futures)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(b) for b in batches))
    return time.perf_counter() - started, time.process_time() - cpu


async def run_batched(rd: BridgedProducer, topic: str, batches: Sequence[Sequence[Record]],
                      depth: int) -> tuple[float, float]:
    gate = asyncio.Semaphore(depth)

    async def one(batch: Sequence[Record]) -> None:
        async with gate:
            await rd.send_batch(topic, batch)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(b) for b in batches))
    return time.perf_counter() - started, time.process_time() - cpu


async def compare(n: int, batch: int) -> list[str]:
    settings = get_settings()
    ws = Workspace(settings)
    lines = []
    try:
        s = ws.settings("p")
        records: list[Record] = [
            (e.to_bytes(), e.partitionkey.encode(), record_headers(e)) for e in synthetic_calls(n, "p")
        ]
        batches = [records[i : i + batch] for i in range(0, n, batch)]
        results: dict[tuple[str, str], tuple[float, float]] = {}
        for shape, depth in (("batches", 1), ("pipelined", 4)):
            topic = await create_topic(s, f"{s.kafka.topic_prefix}.bench.aiokafka.{shape}")
            ak = KafkaClients(s.kafka).producer(
                "bench-aiokafka", max_batch_size=PRODUCER_BATCH_BYTES, linger_ms=5
            )
            await ak.start()
            try:
                await warm_producer(ak, topic, s.kafka.partitions)
                send = await aiokafka_send(ak)
                results[("aiokafka", shape)] = await run_shape(send, topic, batches, depth, True)
            finally:
                await ak.stop()
            topic = await create_topic(s, f"{s.kafka.topic_prefix}.bench.librdkafka.{shape}")
            rd = BridgedProducer(librdkafka_config(s.kafka, "bench-librdkafka"))
            await rd.start()
            try:
                await asyncio.gather(*(rd.send(topic, b"warm", b"warm", []) for _ in range(50)))
                results[("confluent-kafka", shape)] = await run_shape(rd.send, topic, batches, depth, False)
            finally:
                await rd.stop()
            topic = await create_topic(s, f"{s.kafka.topic_prefix}.bench.librdkafka.batched.{shape}")
            rd = BridgedProducer(librdkafka_config(s.kafka, "bench-librdkafka"))
            await rd.start()
            try:
                await asyncio.gather(*(rd.send(topic, b"warm", b"warm", []) for _ in range(50)))
                results[("confluent, 1 future/batch", shape)] = await run_batched(rd, topic, batches, depth)
            finally:
                await rd.stop()
        for (name, shape), (wall, cpu) in results.items():
            base = results[("aiokafka", shape)][0]
            lines.append(f"{name:<26} {shape:<10} {n / wall:>9,.0f} rec/s  cpu {cpu:5.2f} s  "
                         f"x{base / wall:.2f} of aiokafka")
    finally:
        await ws.cleanup()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.producers", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1400, help="records per append (one CAD ingest chunk)")
    args = parser.parse_args()
    for line in asyncio.run(compare(args.records, args.batch)):
        print(line)


if __name__ == "__main__":
    main()
