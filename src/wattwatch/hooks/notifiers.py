"""Notifiers: how one event reaches one target (webhook, email, MQTT) — signing and sending.

A notifier renders an event into the bytes it sends, and sends them; retries, backoff and
the dead-letter list are the ``Deliverer``'s, the same for every notifier. Rendering is
separate from sending so a dead letter can be replayed byte for byte.
"""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import hmac
import smtplib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from wattwatch import __version__

SIGNATURE_HEADER = "X-Wattwatch-Signature"

# The publish callable the MQTT broker (embedded or external client) provides, e.g.
# ``EmbeddedBroker.publish(topic, payload)``; what it returns is not used.
Publish = Callable[[str, bytes], Awaitable[object]]


class DeliveryError(Exception):
    """A send failed; ``permanent`` ones (a 4xx, a refused address) are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, as hooks and webhooks see it."""

    name: str
    org_id: int
    ts_ms: int
    data: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def body(self) -> bytes:
        """The webhook body: ``{"id", "event", "ts", "data"}`` (DESIGN §5)."""
        return orjson.dumps(
            {"id": self.id, "event": self.name, "ts": self.ts_ms, "data": self.data},
            option=orjson.OPT_NON_STR_KEYS,
        )


def sign(secret: str, body: bytes) -> str:
    """The ``X-Wattwatch-Signature`` value: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Check a signature header the way a receiver should (constant time)."""
    return hmac.compare_digest(sign(secret, body), header)


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """The SMTP server (``WATTWATCH_SMTP_*``) that alert emails, and report emails, go through."""

    host: str
    port: int = 25
    sender: str = "wattwatch@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout_s: float = 10.0

    @contextmanager
    def session(self) -> Iterator[smtplib.SMTP]:
        """A connection to the server, after STARTTLS and login when configured."""
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as conn:
            if self.starttls:
                conn.starttls()
            if self.username:
                conn.login(self.username, self.password or "")
            yield conn


@dataclass(slots=True)
class PluginContext:
    """What ``wattwatch_startup`` gets."""

    data_dir: Path
    version: str = __version__


@dataclass(slots=True)
class NotifierContext:
    """What notifiers may use: webhook lookup, SMTP settings, the MQTT publish callable."""

    webhook: Callable[[int], dict[str, Any] | None]
    http: Callable[[], httpx.AsyncClient]
    smtp: SmtpConfig | None = None
    publish: Publish | None = None


class Notifier(Protocol):
    kind: str

    def render(self, target: dict[str, Any], event: Event) -> bytes: ...

    async def send(self, target: dict[str, Any], event_name: str, body: bytes) -> None: ...

    def describe(self, target: dict[str, Any]) -> dict[str, Any]:
        """The target as shown in the dead-letter list: never a secret."""
        ...


class WebhookNotifier:
    """POST the JSON event, signed with the webhook's secret."""

    kind = "webhook"

    def __init__(self, context: NotifierContext) -> None:
        self.context = context

    def render(self, target: dict[str, Any], event: Event) -> bytes:
        return event.body()

    def describe(self, target: dict[str, Any]) -> dict[str, Any]:
        hook = self.context.webhook(target["webhook_id"])
        return {"webhook_id": target["webhook_id"], "url": hook["url"] if hook else None}

    async def send(self, target: dict[str, Any], event_name: str, body: bytes) -> None:
        hook = self.context.webhook(target["webhook_id"])
        if hook is None:
            raise DeliveryError(f"webhook {target['webhook_id']} no longer exists", permanent=True)
        delivery = orjson.loads(body).get("id", "") if body.startswith(b"{") else ""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"wattwatch/{__version__}",
            "X-Wattwatch-Event": event_name,
            "X-Wattwatch-Delivery": str(delivery),
            SIGNATURE_HEADER: sign(hook["secret"], body),
        }
        try:
            r = await self.context.http().post(hook["url"], content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if 200 <= r.status_code < 300:
            return
        permanent = 400 <= r.status_code < 500 and r.status_code not in (408, 425, 429)
        raise DeliveryError(f"HTTP {r.status_code} from receiver", permanent=permanent)


def alert_subject(event: Event) -> str:
    alert = event.data.get("alert", event.data)
    what = {"alert.raised": "ALERT", "alert.cleared": "cleared"}.get(event.name, event.name)
    return f"[wattwatch] {what} ({alert.get('severity', '')}): {alert.get('message', '')}"[:250]


class EmailNotifier:
    """A plain-text email over SMTP (STARTTLS and login when configured)."""

    kind = "email"

    def __init__(self, context: NotifierContext) -> None:
        self.context = context

    def describe(self, target: dict[str, Any]) -> dict[str, Any]:
        return {"to": target["to"]}

    def render(self, target: dict[str, Any], event: Event) -> bytes:
        smtp = self.context.smtp
        msg = EmailMessage()
        msg["From"] = smtp.sender if smtp else "wattwatch@localhost"
        msg["To"] = ", ".join(target["to"])
        msg["Subject"] = alert_subject(event)
        msg["Message-ID"] = f"<{event.id}@wattwatch>"
        alert = event.data.get("alert", event.data)
        lines = [str(alert.get("message", event.name)), ""]
        lines += [f"{k}: {v}" for k, v in alert.items() if k not in ("message", "details")]
        lines += ["", orjson.dumps(event.data, option=orjson.OPT_INDENT_2).decode()]
        msg.set_content("\n".join(lines))
        return msg.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as SMTP wants

    async def send(self, target: dict[str, Any], event_name: str, body: bytes) -> None:
        smtp = self.context.smtp
        if smtp is None:
            raise DeliveryError("no SMTP server configured (WATTWATCH_SMTP_HOST)")
        await asyncio.to_thread(self._send, smtp, target["to"], body)

    @staticmethod
    def _send(smtp: SmtpConfig, to: list[str], body: bytes) -> None:
        try:
            with smtp.session() as conn:
                conn.sendmail(smtp.sender, to, body)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"refused: {list(exc.recipients)}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None


class MqttNotifier:
    """Publish the JSON event to an integration topic through the broker's publish callable."""

    kind = "mqtt"

    def __init__(self, context: NotifierContext) -> None:
        self.context = context

    def describe(self, target: dict[str, Any]) -> dict[str, Any]:
        return {"topic": target["topic"]}

    def render(self, target: dict[str, Any], event: Event) -> bytes:
        return event.body()

    async def send(self, target: dict[str, Any], event_name: str, body: bytes) -> None:
        if self.context.publish is None:
            raise DeliveryError("no MQTT publisher is running in this process")
        try:
            await self.context.publish(target["topic"], body)
        except Exception as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
