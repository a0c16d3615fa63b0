"""Who a connection is (a device or the service account) and which topics it may use.

Credentials (DESIGN.md §4): native, Tasmota and Shelly devices connect with user name = device
uid and password = device token; ThingsBoard devices with user name = device token and any or
no password. The service account (integrations, dashboards, bridges) uses the configured
``mqtt_service_user`` / ``mqtt_service_password``. Everything else is refused, anonymous
connections included. The topic rules of a device are its protocol adapter's
``topic_allowed``; the service account may read every device topic except ThingsBoard's
connection-scoped ``v1/devices/me/…`` and publish device data topics (never commands).

``RegistryAuthPlugin`` is the amqtt plugin form of the same policy, so amqtt's own
subscription path (``Broker.add_subscription``) asks it too.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from wattwatch.broker.codec import Reason
from wattwatch.domain import DeviceProtocol, DeviceRef
from wattwatch.protocols import adapter_for, identify
from wattwatch.protocols._payload import filter_levels, topic_levels
from wattwatch.registry.service import hash_secret

log = logging.getLogger(__name__)

# Where the broker keeps a session's Identity (amqtt asks plugins to namespace their keys).
IDENTITY_KEY = "wattwatch.identity"
# The CONNECT password as sent (bytes; amqtt's Session.password is text).
PASSWORD_KEY = "wattwatch.password"
REFUSAL_KEY = "wattwatch.refusal"
THINGSBOARD_ROOT = "v1/devices/me/"


class DeviceDirectory(Protocol):
    """The registry lookups the broker needs (``SqlRegistry`` has them)."""

    def device_by(self, **where: Any) -> dict[str, Any] | None: ...


def device_ref(device: Mapping[str, Any]) -> DeviceRef:
    return DeviceRef(
        id=device["id"],
        uid=device["uid"],
        protocol=DeviceProtocol(device["protocol"]),
        topic=device["topic"],
        key_map=dict(device.get("key_map") or {}),
    )


@dataclass(slots=True)
class Identity:
    """The authenticated party behind a session."""

    kind: Literal["device", "service"]
    name: str
    device: dict[str, Any] | None = None
    ref: DeviceRef | None = None
    # Publish verdicts per topic: a device uses a handful of topics, checked once each.
    _publish_ok: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def for_device(cls, device: dict[str, Any]) -> Identity:
        return cls("device", device["uid"], device, device_ref(device))

    @classmethod
    def service(cls, name: str) -> Identity:
        return cls("service", name)

    @property
    def owner(self) -> str:
        """What a client id is bound to: one device, or the service account."""
        if self.device is not None:
            return f"device:{self.device['id']}"
        return f"service:{self.name}"

    @property
    def device_id(self) -> int | None:
        return None if self.device is None else int(self.device["id"])

    @property
    def is_thingsboard(self) -> bool:
        return self.ref is not None and self.ref.protocol is DeviceProtocol.THINGSBOARD

    def may_publish(self, topic: str) -> bool:
        verdict = self._publish_ok.get(topic)
        if verdict is None:
            verdict = self._check(topic, publish=True)
            if len(self._publish_ok) < 64:
                self._publish_ok[topic] = verdict
        return verdict

    def may_subscribe(self, topic_filter: str) -> bool:
        return self._check(topic_filter, publish=False)

    def _check(self, topic: str, *, publish: bool) -> bool:
        if self.ref is not None:
            try:
                return adapter_for(self.ref.protocol).topic_allowed(
                    self.ref, topic, publish=publish
                )
            except ValueError:
                return False
        if publish:
            return service_may_publish(topic)
        # Any filter but broker topics ($SYS, $share) and ThingsBoard's per-connection ones;
        # "#" is fine: ThingsBoard traffic is never delivered to the service account.
        levels = filter_levels(topic)
        return levels is not None and not topic.startswith("$") and levels[0] != "v1"


def service_may_publish(topic: str) -> bool:
    """The service account may publish data topics of identifiable devices, never commands.

    The topic is checked as if the device it names had published it, so command topics
    (which no device may publish) are refused the same way.
    """
    if topic_levels(topic) is None:
        return False
    found = identify(topic)
    if found is None:
        return False
    protocol, address = found
    if address is None or protocol is DeviceProtocol.THINGSBOARD:
        return False
    ref = DeviceRef(0, address, protocol, address)
    try:
        return adapter_for(protocol).topic_allowed(ref, topic, publish=True)
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: Reason
    why: str


class Authenticator:
    """Checks CONNECT credentials against the registry and the configured service account."""

    def __init__(
        self,
        directory: DeviceDirectory,
        *,
        service_user: str | None = None,
        service_password: str | None = None,
    ) -> None:
        self.directory = directory
        self.service_user = service_user
        self.service_password = service_password

    def check(self, username: str | None, password: bytes | None) -> Identity | Refusal:
        """Blocking (a registry read): call it from a worker thread on the event loop."""
        if not username:
            return Refusal(Reason.NOT_AUTHORIZED, "anonymous connections are refused")
        secret = None
        if password is not None:
            try:
                secret = password.decode("utf-8")
            except UnicodeDecodeError:
                return Refusal(Reason.BAD_CREDENTIALS, "password is not UTF-8")
        if (
            self.service_user is not None
            and self.service_password
            and hmac.compare_digest(username.encode(), self.service_user.encode())
        ):
            if secret is not None and hmac.compare_digest(
                secret.encode(), self.service_password.encode()
            ):
                return Identity.service(self.service_user)
            return Refusal(Reason.BAD_CREDENTIALS, "wrong service account password")
        if secret:
            device = self.directory.device_by(token_hash=hash_secret(secret))
            if device is not None and device["uid"] == username:
                return self._usable(device)
        # ThingsBoard: the access token is the user name and the password is not looked at.
        device = self.directory.device_by(token_hash=hash_secret(username))
        if device is not None and device["protocol"] == DeviceProtocol.THINGSBOARD:
            return self._usable(device)
        return Refusal(Reason.BAD_CREDENTIALS, "unknown user name or wrong token")

    @staticmethod
    def _usable(device: dict[str, Any]) -> Identity | Refusal:
        if device["org_id"] is None:
            return Refusal(Reason.NOT_AUTHORIZED, f"device {device['uid']} is not claimed yet")
        try:
            adapter_for(device["protocol"])
        except ValueError:
            return Refusal(
                Reason.NOT_AUTHORIZED,
                f"device {device['uid']} uses protocol {device['protocol']}, not an MQTT one",
            )
        return Identity.for_device(device)


class RegistryAuthPlugin(BaseAuthPlugin, BaseTopicPlugin):  # type: ignore[misc]
    """amqtt plugin: authentication and topic ACL from the wattwatch registry.

    amqtt builds plugins from configuration, so the policy is attached after the broker is
    built (``attach``); until then every connection is refused.
    """

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.authenticator: Authenticator | None = None

    def attach(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def authenticate(self, *, session: Session) -> bool | None:
        identity = session.attributes.get(IDENTITY_KEY)
        if isinstance(identity, Identity):
            return True  # already checked by the broker before it looked at any session
        if self.authenticator is None:
            return False
        password = session.attributes.get(PASSWORD_KEY)
        if not isinstance(password, bytes) and session.password is not None:
            password = session.password.encode()
        verdict = await asyncio.to_thread(self.authenticator.check, session.username, password)
        if isinstance(verdict, Refusal):
            session.attributes[REFUSAL_KEY] = verdict
            return False
        session.attributes[IDENTITY_KEY] = verdict
        return True

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        identity = session.attributes.get(IDENTITY_KEY) if session is not None else None
        if not isinstance(identity, Identity) or topic is None:
            return False
        if action == Action.PUBLISH:
            return identity.may_publish(topic)
        if action == Action.SUBSCRIBE:
            return identity.may_subscribe(topic)
        return True  # RECEIVE: deliveries are routed by the broker to allowed sessions only
