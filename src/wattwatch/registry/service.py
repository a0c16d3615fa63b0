"""Registry service: accounts, login, sites and devices with their secrets (hashed at rest)."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from wattwatch.domain import DEFAULT_CHANNEL, DeviceKind, DeviceProtocol, Role, now_ms
from wattwatch.errors import AuthError, Forbidden, InvalidInput, NotFound, RateLimited
from wattwatch.store.registry import SqlRegistry

_hasher = PasswordHasher()
# Verified against when the email is unknown, so both paths cost the same time.
_DUMMY_HASH = _hasher.hash("wattwatch-no-such-user")

DEVICE_TOKEN_PREFIX = "wwd_"
USER_TOKEN_PREFIX = "wwu_"
API_KEY_PREFIX = "wwk_"
MIN_PASSWORD_LENGTH = 10
_UID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_TOPIC_RE = re.compile(r"^[^#+\s/][^#+\s]{0,127}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")

# Login attempts allowed per email within the window before answering 429.
LOGIN_ATTEMPTS = 10
LOGIN_WINDOW_S = 300.0


def hash_secret(secret: str) -> str:
    """Tokens are 256-bit random: a plain SHA-256 is enough to make a stolen table useless."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown timezone {name!r} (use an IANA name like Europe/Madrid)"
        ) from None
    return name


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user acting in one organisation with one role."""

    user_id: int
    org_id: int
    role: Role
    email: str

    def require(self, role: Role) -> None:
        if not self.role.at_least(role):
            raise Forbidden(f"this needs the {role} role; you are {self.role}")


@dataclass(frozen=True, slots=True)
class Bootstrap:
    email: str
    password: str


class LoginLimiter:
    """Sliding-window count of login attempts per key (email)."""

    def __init__(self, attempts: int = LOGIN_ATTEMPTS, window_s: float = LOGIN_WINDOW_S) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            q = self._seen.setdefault(key, deque())
            while q and q[0] < now - self.window_s:
                q.popleft()
            if len(q) >= self.attempts:
                wait = int(q[0] + self.window_s - now) + 1
                raise RateLimited(f"too many login attempts; try again in {wait} s")
            q.append(now)


class RegistryService:
    def __init__(self, registry: SqlRegistry, *, login_ttl_s: int = 7 * 24 * 3600) -> None:
        self.db = registry
        self.login_ttl_s = login_ttl_s
        self.limiter = LoginLimiter()

    # -- accounts -------------------------------------------------------------------------
    def bootstrap_owner(self, email: str = "owner@localhost") -> Bootstrap | None:
        """On first start, create the organisation and its owner with a one-time password."""
        if self.db.count_users() > 0:
            return None
        org_id = self.db.create_org("My organisation")
        password = secrets.token_urlsafe(12)
        self.db.create_user(email, _hasher.hash(password), org_id, Role.OWNER, must_change=True)
        return Bootstrap(email, password)

    def add_user(self, email: str, password: str, role: Role, org_id: int | None = None) -> int:
        if not _EMAIL_RE.match(email):
            raise InvalidInput(f"not an email address: {email!r}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
        if org_id is None:
            org_id = self.db.first_org_id() or self.db.create_org("My organisation")
        return self.db.create_user(email, _hasher.hash(password), org_id, role)

    def login(self, email: str, password: str) -> tuple[str, dict[str, Any]]:
        """Check a password; return a new login token and the user record."""
        self.limiter.check(email.lower())
        user = self.db.user_by_email(email)
        try:
            _hasher.verify(user["password_hash"] if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            user = None
        if user is None:
            raise AuthError("wrong email or password")
        orgs = self.db.memberships_of(user["id"])
        if not orgs:
            raise AuthError("this account belongs to no organisation")
        token = new_secret(USER_TOKEN_PREFIX)
        self.db.create_auth_token(
            hash_secret(token),
            kind="login",
            user_id=user["id"],
            org_id=orgs[0]["org_id"],
            expires_ms=now_ms() + self.login_ttl_s * 1000,
        )
        return token, user

    def change_password(self, principal: Principal, old: str, new: str) -> None:
        user = self.db.user_by_email(principal.email)
        if user is None:
            raise NotFound("user not found")
        try:
            _hasher.verify(user["password_hash"], old)
        except (VerificationError, InvalidHashError):
            raise AuthError("the current password is wrong") from None
        if len(new) < MIN_PASSWORD_LENGTH:
            raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
        self.db.set_password_hash(user["id"], _hasher.hash(new))

    def logout(self, token: str) -> None:
        self.db.revoke_auth_token(hash_secret(token))

    def principal_for_token(self, token: str) -> Principal:
        record = self.db.auth_token(hash_secret(token))
        if record is None or (record["expires_ms"] and record["expires_ms"] < now_ms()):
            raise AuthError("invalid or expired token")
        role = Role(record["role"])
        if record["scope"]:
            scope = Role(record["scope"])
            role = scope if role.at_least(scope) else role
        return Principal(record["user_id"], record["org_id"], role, record["email"])

    # -- sites ----------------------------------------------------------------------------
    def create_site(
        self,
        principal: Principal,
        name: str,
        timezone: str,
        tariff: dict[str, Any],
        address: str | None = None,
    ) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        site_id = self.db.create_site(
            principal.org_id, name, check_timezone(timezone), tariff, address
        )
        return self.db.get_site(principal.org_id, site_id)

    def update_site(
        self, principal: Principal, site_id: int, values: dict[str, Any]
    ) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        if "timezone" in values:
            check_timezone(values["timezone"])
        self.db.update_site(principal.org_id, site_id, values)
        return self.db.get_site(principal.org_id, site_id)

    # -- devices --------------------------------------------------------------------------
    def create_device(
        self,
        principal: Principal,
        *,
        name: str,
        site_id: int | None,
        kind: DeviceKind = DeviceKind.MONITOR,
        protocol: DeviceProtocol = DeviceProtocol.NATIVE,
        uid: str | None = None,
        topic: str | None = None,
        channels: list[str] | None = None,
        identifiers: dict[str, str] | None = None,
        location: dict[str, Any] | None = None,
        key_map: dict[str, str] | None = None,
        model: str | None = None,
        firmware: str | None = None,
        area_id: int | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Register a device; return its record and its token (shown only now)."""
        principal.require(Role.ADMIN)
        if site_id is not None:
            self.db.get_site(principal.org_id, site_id)  # 404 for another org's site
        uid = uid or f"ww-{secrets.token_hex(6)}"
        if not _UID_RE.match(uid):
            raise InvalidInput("uid may use letters, digits and _ . : - (at most 64)")
        topic = topic or uid
        if not _TOPIC_RE.match(topic):
            raise InvalidInput("topic must not contain spaces, + or #, nor start with /")
        token = new_secret(DEVICE_TOKEN_PREFIX)
        device_id = self.db.create_device(
            {
                "uid": uid,
                "org_id": principal.org_id,
                "site_id": site_id,
                "area_id": area_id,
                "name": name,
                "kind": str(kind),
                "protocol": str(protocol),
                "topic": topic,
                "model": model,
                "firmware": firmware,
                "identifiers": identifiers or {},
                "location": location,
                "key_map": key_map or {},
                "token_hash": hash_secret(token),
            },
            channels or [DEFAULT_CHANNEL],
        )
        return self.get_device(principal, device_id), token

    def get_device(self, principal: Principal, device_id: int) -> dict[str, Any]:
        device = self.db.get_device(principal.org_id, device_id)
        device["channels"] = self.db.list_channels(device_id)
        return device

    def rotate_device_token(self, principal: Principal, device_id: int) -> str:
        principal.require(Role.ADMIN)
        self.db.get_device(principal.org_id, device_id)
        token = new_secret(DEVICE_TOKEN_PREFIX)
        self.db.update_device(device_id, {"token_hash": hash_secret(token)})
        return token

    def device_for_token(self, token: str) -> dict[str, Any]:
        """The device a device token belongs to (AuthError when none does)."""
        if not token:
            raise AuthError("missing device token")
        device = self.db.device_by(token_hash=hash_secret(token))
        if device is None or device["org_id"] is None:
            raise AuthError("invalid device token")
        return device
