"""MQTT publishing from the outbox, with reconnection and backoff.

Topics under ``<prefix>/<device_id>/``: ``sentiment`` (QoS 1, one message
per result), ``availability`` (retained ``online``/``offline``, ``offline``
also as the will), ``status`` (retained JSON health summary), and the control
topic ``listen/set`` (``ON``/``OFF``, read) with its state on ``listen``
(retained, written).

A result is removed from the outbox only after the broker's PUBACK. If the
connection drops between the broker receiving a result and us seeing the
PUBACK, the result is sent again after the reconnect: consumers de-duplicate
on ``id``. A dropped link is noticed at once (the socket closes, or the
keepalive ping goes unanswered), not at the next publish: waiting for a
result and waiting for a PUBACK both end when the connection does.

Every outbox call runs on the outbox's own thread (``Outbox.call``), never
on the event loop. A PUBACK's delete is queued there without waiting for it:
the next read of what is pending comes after it, so nothing is sent twice.

`edge-msa outbox flush` uses a publisher too, with ``flush=True``: its own
client id (so the broker does not drop a running service's session), no
will, no availability, no control topic; only a final ``stopped`` status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from edge_msa.config import MqttConfig
from edge_msa.publishing.outbox import Outbox
from edge_msa.runtime import listen as listen_mod
from edge_msa.runtime.health import StageClock

if TYPE_CHECKING:
    from edge_msa.runtime.listen import Listen

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0  # a PUBACK that takes longer means the link is gone
BACKOFF_MIN_S = 0.5
CLOSING_RETRY_S = 1.0  # retry pace while flushing at shutdown

T = TypeVar("T")


class LinkLost(aiomqtt.MqttError):
    """The connection closed while we waited for something."""


class Topics:
    def __init__(self, prefix: str, device_id: str) -> None:
        base = f"{prefix}/{device_id}"
        self.sentiment = f"{base}/sentiment"
        self.availability = f"{base}/availability"
        self.status = f"{base}/status"
        self.listen = f"{base}/listen"
        self.listen_set = f"{base}/listen/set"


class MqttPublisher:
    """Drains the outbox to the broker; ``run`` until ``close`` is called."""

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        outbox: Outbox,
        status: Callable[[], dict[str, object]] = dict,
        listen: Listen | None = None,
        flush: bool = False,
    ) -> None:
        """``listen``: obey the control topic; ``flush``: `edge-msa outbox flush`."""
        self.cfg = cfg
        self.device_id = device_id
        self.topics = Topics(cfg.prefix, device_id)
        self.outbox = outbox
        self.status = status
        self.listen = None if flush else listen
        self.flush = flush
        self.published = 0
        self.connected = False
        self.progress = StageClock()  # for the health check: PUBACKs while results wait
        self._wake = asyncio.Event()
        self._retry_now = asyncio.Event()  # set by stop(): cut the backoff short
        self._closing = False
        self._given_up = False  # stop(): the deadline passed
        self._status_due = False  # a source's state changed: publish the status now
        self._listen_sent: str | None = None  # the listen state published on this connection
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """A new result is in the outbox."""
        self.progress.arrived()
        self._wake.set()

    def status_changed(self) -> None:
        """A source's state changed (lost, reconnected): publish the status now."""
        self._status_due = True
        self._wake.set()

    async def run(self) -> None:
        delay = BACKOFF_MIN_S
        while True:
            try:
                async with self._client() as client:
                    self._on_connected()
                    delay = BACKOFF_MIN_S
                    await self._serve(client)
                    return
            except (aiomqtt.MqttError, OSError) as e:  # OSError: password_file gone
                was_connected, self.connected = self.connected, False
                if self.listen is not None:
                    self.listen.decide()  # the control topic cannot be read now: go on
                left = await self._count()
                if self._given_up or (self._closing and left == 0):
                    return
                # Flushing at shutdown: the broker may be back any moment and the
                # deadline is short; _finish says what stays, so no line per retry.
                wait = min(delay, CLOSING_RETRY_S) if self._closing else delay
                log.log(
                    logging.DEBUG if self._closing else logging.WARNING,
                    "%s; %d result(s) wait in the outbox; retrying in %.1f s",
                    describe_failure(self.cfg, e, was_connected), left, wait,
                )
                await self._backoff(wait)
                delay = min(delay * 2, self.cfg.backoff_max_s)

    async def _backoff(self, wait: float) -> None:
        """Sleep ``wait`` s, cut short by ``stop``."""
        if self._closing:
            await asyncio.sleep(wait)
            return
        # asyncio.wait, not wait_for: on Python < 3.12 wait_for swallows a cancel
        # that arrives as the event is set, which is what stop() does.
        waiter = asyncio.ensure_future(self._retry_now.wait())
        try:
            await asyncio.wait({waiter}, timeout=wait)
        finally:
            waiter.cancel()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="mqtt")

    async def stop(self, timeout: float) -> int:
        """Deliver what is pending for up to ``timeout`` s; returns how many remain.

        What is not delivered by then stays in the outbox for the next start.
        """
        self._closing = True
        self._wake.set()
        self._retry_now.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        if not self._task.done():
            # aiomqtt can turn a cancelled connect into an MqttError, which the
            # retry loop would catch: the flag makes that loop end too.
            self._given_up = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return await self._count()

    async def _count(self) -> int:
        return await self.outbox.call(self.outbox.count)

    def _on_connected(self) -> None:
        self.connected = True
        self.progress.done(0)  # results that waited for the broker wait from now
        log.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)

    async def _serve(self, client: aiomqtt.Client) -> None:
        self._listen_sent = None  # a new connection: the state is published again
        if not self.flush:
            await until_lost(
                client, client.publish(self.topics.availability, "online", qos=1, retain=True)
            )
        if self.listen is not None:
            await self._sync_listen(client)
        if not self.flush:
            await self._publish_status(client)
        if self.cfg.ha_discovery and not self.flush:
            await self._start_ha_discovery(client)
        listener = None
        if self.listen is not None or (self.cfg.ha_discovery and not self.flush):
            listener = asyncio.create_task(self._messages(client), name="mqtt-messages")
        try:
            await self._serve_results(client)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await listener

    async def _sync_listen(self, client: aiomqtt.Client) -> None:
        """Read a retained command on ``listen/set`` before the sources start.

        The broker sends a retained message right after the SUBACK; the SUBACK
        of a second SUBSCRIBE comes after it, so once that one is back any
        retained command is in the client's queue, and is handled here.
        """
        for _ in range(2):
            await until_lost(client, client.subscribe(self.topics.listen_set, qos=1))
        while len(client.messages):
            await self._handle(client, await client.messages.__anext__())
        self.listen.decide()
        await self._publish_listen(client)

    async def _start_ha_discovery(self, client: aiomqtt.Client) -> None:
        from edge_msa.publishing import ha

        await ha.publish(client, self._discovery(), PUBLISH_TIMEOUT_S)
        await client.subscribe(ha.status_topic(self.cfg), qos=1)

    def _discovery(self) -> list[tuple[str, str]]:
        from edge_msa.publishing import ha

        return ha.discovery_messages(self.cfg, self.device_id, switch=self.listen is not None)

    async def _messages(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                await self._handle(client, message)
            except aiomqtt.MqttError:
                raise  # the connection is gone: _serve sees it too
            except Exception:  # one odd message must not end the publisher
                log.warning("message on %s not handled", message.topic, exc_info=True)

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        from edge_msa.publishing import ha

        if message.topic.matches(self.topics.listen_set) and self.listen is not None:
            raw = message.payload if isinstance(message.payload, bytes) else b""
            text = raw[:40].decode("utf-8", "replace").strip()
            on = listen_mod.parse(text)
            if on is None:
                if text:  # an empty payload clears a retained command: nothing to do
                    log.warning("%s: %r is neither ON nor OFF; ignored",
                                self.topics.listen_set, text)
                return
            retained = "retained " if message.retain else ""
            if self.listen.set(on, f"{retained}{text} on {self.topics.listen_set}"):
                self.status_changed()
            await self._publish_listen(client)
        elif message.topic.matches(ha.status_topic(self.cfg)) and message.payload == b"online":
            # Home Assistant restarted (its birth message): send the configs again.
            log.info("Home Assistant is online: republishing discovery")
            await ha.publish(client, self._discovery(), PUBLISH_TIMEOUT_S)

    async def _publish_listen(self, client: aiomqtt.Client) -> None:
        word = self.listen.word
        if word == self._listen_sent:
            return
        await until_lost(
            client,
            client.publish(
                self.topics.listen, word, qos=1, retain=True, timeout=PUBLISH_TIMEOUT_S
            ),
        )
        self._listen_sent = word

    async def _serve_results(self, client: aiomqtt.Client) -> None:
        while True:
            sent = await self._drain(client)
            if (sent and not self.flush) or self._status_due:
                self._status_due = False
                await self._publish_status(client)
            if self._closing and await self._count() == 0:
                break
            if not self._closing:
                await until_lost(client, self._wake.wait())
            self._wake.clear()
        await self._publish_status(client, state="stopped")
        if not self.flush:
            await client.publish(self.topics.availability, "offline", qos=1, retain=True)

    async def _drain(self, client: aiomqtt.Client) -> int:
        sent = 0
        while batch := await self.outbox.call(self.outbox.pending):
            for item in batch:
                await until_lost(
                    client,
                    client.publish(
                        self.topics.sentiment, item.payload, qos=1, timeout=PUBLISH_TIMEOUT_S
                    ),
                )
                # Not awaited: the next pending() runs after it on the outbox's thread.
                self.outbox.submit(self.outbox.remove, item.seq)
                self.progress.done()
                sent += 1
        self.progress.idle()
        self.published += sent
        return sent

    async def _publish_status(self, client: aiomqtt.Client, state: str = "running") -> None:
        body: dict[str, object] = {"state": state, "outbox_pending": await self._count()}
        if self.outbox.problem is not None:
            body["outbox_problem"] = self.outbox.problem
            body["outbox_memory"] = self.outbox.in_memory
        if self.listen is not None:
            body["listen"] = self.listen.word
        body.update(self.status())
        await until_lost(
            client,
            client.publish(
                self.topics.status, json.dumps(body), qos=1, retain=True,
                timeout=PUBLISH_TIMEOUT_S,
            ),
        )

    def _client(self) -> aiomqtt.Client:
        if self.flush:  # not the service's id: the broker would drop the service's session
            return make_client(self.cfg, f"edge-msa-{self.device_id}-flush")
        return make_client(
            self.cfg,
            f"edge-msa-{self.device_id}",
            will=aiomqtt.Will(self.topics.availability, "offline", qos=1, retain=True),
        )


class _PahoToDebug(logging.Filter):
    """paho logs a dropped connection at ERROR ("failed to receive on socket"), a
    second line beside our own warning: its lines are kept for DEBUG only."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


_paho_log = logging.getLogger("edge_msa.publishing.paho")
_paho_log.addFilter(_PahoToDebug())


def make_client(
    cfg: MqttConfig, identifier: str, will: aiomqtt.Will | None = None
) -> aiomqtt.Client:
    """A client with the config's TLS and credentials (shared with `edge-msa doctor`)."""
    tls = None
    if cfg.tls:
        tls = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    return aiomqtt.Client(
        cfg.host,
        cfg.port,
        identifier=identifier,
        username=cfg.username,
        password=cfg.secret(),
        keepalive=cfg.keepalive,
        timeout=PUBLISH_TIMEOUT_S,
        tls_context=tls,
        will=will,
        logger=_paho_log,
    )


async def until_lost(client: aiomqtt.Client, aw: Awaitable[T]) -> T:
    """``await aw``, or raise LinkLost as soon as the client's connection closes.

    aiomqtt (2.x) keeps the connection's end in the private future
    ``_disconnected``; without it a pending PUBACK waits out its timeout and an
    idle publisher notices a dead broker only at its next publish.
    """
    lost: asyncio.Future[None] | None = getattr(client, "_disconnected", None)
    task = asyncio.ensure_future(aw)
    if lost is None:
        return await task
    done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.wait({task})  # not `await task`: that could swallow our own cancel
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not warn about it
    cause = lost.exception()  # also marks it retrieved
    raise LinkLost(f"connection lost ({cause or 'closed by the broker'})")


def describe_failure(cfg: MqttConfig, e: Exception, was_connected: bool) -> str:
    """One line: what went wrong with the broker, and what to check."""
    where = f"MQTT broker {cfg.host}:{cfg.port}"
    if isinstance(e, OSError) and not isinstance(e, aiomqtt.MqttError):
        what = "mqtt.password_file cannot be read" if cfg.password_file else "error"
        return f"{where}: {what} ({e.strerror or e})"
    text = str(e)
    low = text.lower()
    if isinstance(e, MqttConnectError) or "not author" in low or "bad user" in low:
        return (
            f"{where} refused the connection ({text}): check mqtt.username and the password "
            "(mqtt.password_file or EDGE_MSA_MQTT__PASSWORD)"
        )
    if "ssl" in low or "certificate" in low or "tls" in low:
        return (
            f"{where}: TLS failed ({text}): check mqtt.ca_file, and that mqtt.host is a name "
            "the server certificate holds"
        )
    if was_connected:
        return f"{where}: {text}"
    return f"{where} unreachable ({text})"
