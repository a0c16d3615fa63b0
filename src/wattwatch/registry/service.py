"""Registry service: accounts, roles, API keys, sites, areas, devices, claims (secrets hashed)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from wattwatch.domain import DEFAULT_CHANNEL, DeviceKind, DeviceProtocol, Role, now_ms
from wattwatch.errors import AuthError, Conflict, Forbidden, InvalidInput, NotFound, RateLimited
from wattwatch.protocols import check_device_topic
from wattwatch.store.registry import SqlRegistry
from wattwatch.tariffs import Tariff

log = logging.getLogger(__name__)

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
# Claim and provisioning attempts (per user, per organisation, per device uid) in the same
# window: a claim code is short enough to be typed, so guessing must stay slow.
CLAIM_ATTEMPTS = 20
# Generated claim codes: 16 characters of Crockford's base32 (80 bits), shown in groups of 4.
CLAIM_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CLAIM_CODE_CHARS = 16
MIN_CLAIM_CODE_CHARS = 8
_CLAIM_SEPARATORS = re.compile(r"[\s_-]+")
_CROCKFORD = str.maketrans({"O": "0", "I": "1", "L": "1"})
MAX_AREA_DEPTH = 16
MAX_API_KEY_DAYS = 3650


def hash_secret(secret: str) -> str:
    """Tokens are 256-bit random: a plain SHA-256 is enough to make a stolen table useless."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def normalise_claim_code(code: str) -> str:
    """Upper case, no separators, Crockford's look-alikes folded (O→0, I/L→1): what a person
    types from a label matches what was registered."""
    return _CLAIM_SEPARATORS.sub("", code.strip()).upper().translate(_CROCKFORD)


def hash_claim_code(code: str) -> str:
    return hash_secret("claim:" + normalise_claim_code(code))


def new_claim_code() -> str:
    raw = "".join(secrets.choice(CLAIM_ALPHABET) for _ in range(CLAIM_CODE_CHARS))
    return "-".join(raw[i : i + 4] for i in range(0, CLAIM_CODE_CHARS, 4))


def check_claim_code(code: str) -> str:
    normal = normalise_claim_code(code)
    if len(normal) < MIN_CLAIM_CODE_CHARS or len(normal) > 64 or not normal.isalnum():
        raise InvalidInput(
            f"a claim code has {MIN_CLAIM_CODE_CHARS}-64 letters and digits (dashes and "
            "spaces are ignored)"
        )
    return code


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
    # How the caller authenticated when it matters for the audit trail ("API key 'ha'").
    via: str | None = None

    def require(self, role: Role) -> None:
        if not self.role.at_least(role):
            raise Forbidden(f"this needs the {role} role; you are {self.role}")

    def require_billing(self) -> None:
        """Tariffs are billing settings: owners only."""
        if not self.role.at_least(Role.OWNER):
            raise Forbidden(
                f"tariffs are billing settings and need the owner role; you are {self.role}"
            )

    @property
    def actor(self) -> str:
        """Who did it, as the audit trail says it."""
        return f"{self.email} ({self.via})" if self.via else self.email


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

    def check(self, key: str, what: str = "login") -> None:
        now = time.monotonic()
        with self._lock:
            q = self._seen.setdefault(key, deque())
            while q and q[0] < now - self.window_s:
                q.popleft()
            if len(q) >= self.attempts:
                wait = int(q[0] + self.window_s - now) + 1
                raise RateLimited(
                    f"too many {what} attempts; try again in {wait} s", retry_after_s=wait
                )
            q.append(now)
            if len(self._seen) > 100_000:  # a flood of distinct keys must not grow memory
                self._seen = {
                    k: v for k, v in self._seen.items() if v and v[-1] > now - self.window_s
                }


DeviceListener = Callable[[int], None]


class RegistryService:
    def __init__(self, registry: SqlRegistry, *, login_ttl_s: int = 7 * 24 * 3600) -> None:
        self.db = registry
        self.login_ttl_s = login_ttl_s
        self.limiter = LoginLimiter()
        self.claim_limiter = LoginLimiter(CLAIM_ATTEMPTS)
        self._credential_listeners: list[DeviceListener] = []

    def on_device_credentials(self, listener: DeviceListener) -> None:
        """Call ``listener(device_id)`` when a device's token or identity (uid, protocol,
        topic) changes or it is deleted, so live connections made with the old one end."""
        self._credential_listeners.append(listener)

    def _credentials_changed(self, device_id: int) -> None:
        for listener in self._credential_listeners:
            try:
                listener(device_id)
            except Exception:  # a broker hiccup must not undo a revocation already stored
                log.exception("could not end the sessions of device %s", device_id)

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
        via = None
        if record["kind"] == "api_key":
            via = f"API key {record.get('name') or record['id']!r}"
        return Principal(record["user_id"], record["org_id"], role, record["email"], via)

    # -- users and roles ------------------------------------------------------------------
    def list_users(self, principal: Principal) -> list[dict[str, Any]]:
        principal.require(Role.ADMIN)
        return self.db.list_users(principal.org_id)

    def get_user(self, principal: Principal, user_id: int) -> dict[str, Any]:
        if user_id != principal.user_id:
            principal.require(Role.ADMIN)
        return self.db.get_member(principal.org_id, user_id)

    def invite_user(
        self, principal: Principal, email: str, role: Role, password: str | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """Add a user to the caller's organisation (owners only). Without a password a
        random one-time password is made, returned once, and must be changed at first login."""
        principal.require(Role.OWNER)
        email = email.strip()
        if not _EMAIL_RE.match(email) or len(email) > 320:
            raise InvalidInput(f"not an email address: {email[:80]!r}")
        one_time = None
        if password is None:
            one_time = password = secrets.token_urlsafe(12)
        elif len(password) < MIN_PASSWORD_LENGTH:
            raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
        user_id = self.db.create_user(
            email, _hasher.hash(password), principal.org_id, Role(role), must_change=bool(one_time)
        )
        return self.db.get_member(principal.org_id, user_id), one_time

    def set_user_role(self, principal: Principal, user_id: int, role: Role) -> dict[str, Any]:
        principal.require(Role.OWNER)
        member = self.db.get_member(principal.org_id, user_id)
        role = Role(role)
        if member["role"] == Role.OWNER and role != Role.OWNER:
            self._keep_an_owner(principal.org_id)
        self.db.set_role(principal.org_id, user_id, role)
        return self.db.get_member(principal.org_id, user_id)

    def remove_user(self, principal: Principal, user_id: int) -> None:
        """End a membership; the user's tokens and keys for this organisation stop at once."""
        principal.require(Role.OWNER)
        member = self.db.get_member(principal.org_id, user_id)
        if member["role"] == Role.OWNER:
            self._keep_an_owner(principal.org_id)
        self.db.remove_member(principal.org_id, user_id)

    def _keep_an_owner(self, org_id: int) -> None:
        if self.db.count_owners(org_id) <= 1:
            raise Conflict("the organisation must keep at least one owner")

    # -- API keys -------------------------------------------------------------------------
    def create_api_key(
        self,
        principal: Principal,
        name: str,
        scope: Role | None = None,
        expires_days: int | None = None,
    ) -> tuple[dict[str, Any], str]:
        """A key acting as the caller with at most ``scope`` (never more than the caller's
        own role); the secret is returned only now."""
        if principal.user_id <= 0:
            raise InvalidInput("API keys belong to a user: log in as one to create a key")
        scope = Role(scope) if scope is not None else principal.role
        if not principal.role.at_least(scope):
            raise Forbidden(f"a key cannot have more rights than you ({principal.role})")
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise InvalidInput("an API key needs a name of 1-200 characters")
        if expires_days is not None and not 1 <= expires_days <= MAX_API_KEY_DAYS:
            raise InvalidInput(f"expires_days must be 1-{MAX_API_KEY_DAYS}")
        key = new_secret(API_KEY_PREFIX)
        key_id = self.db.create_auth_token(
            hash_secret(key),
            kind="api_key",
            user_id=principal.user_id,
            org_id=principal.org_id,
            expires_ms=now_ms() + expires_days * 86_400_000 if expires_days else None,
            scope=str(scope),
            name=name,
        )
        return self.db.get_api_key(principal.org_id, key_id), key

    def list_api_keys(self, principal: Principal) -> list[dict[str, Any]]:
        """Owners see every key of the organisation; others their own."""
        mine = None if principal.role.at_least(Role.OWNER) else principal.user_id
        return self.db.list_api_keys(principal.org_id, mine)

    def revoke_api_key(self, principal: Principal, key_id: int) -> None:
        key = self.db.get_api_key(principal.org_id, key_id)
        if key["user_id"] != principal.user_id and not principal.role.at_least(Role.OWNER):
            raise NotFound("API key not found")
        self.db.revoke_api_key(key_id)

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
        if tariff and Tariff.of(tariff) != Tariff():
            principal.require_billing()
        site_id = self.db.create_site(
            principal.org_id, name, check_timezone(timezone), tariff, address
        )
        return self.db.get_site(principal.org_id, site_id)

    def update_site(
        self, principal: Principal, site_id: int, values: dict[str, Any]
    ) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        self.db.get_site(principal.org_id, site_id)  # 404 before 403: another org's site
        for key in ("name", "timezone", "tariff"):
            if key in values and values[key] is None:
                raise InvalidInput(f"{key} cannot be null; leave it out to keep it")
        if "tariff" in values:
            principal.require_billing()
        if "timezone" in values:
            check_timezone(values["timezone"])
        self.db.update_site(principal.org_id, site_id, values)
        return self.db.get_site(principal.org_id, site_id)

    def delete_site(self, principal: Principal, site_id: int) -> None:
        principal.require(Role.ADMIN)
        self.db.delete_site(principal.org_id, site_id)

    # -- areas ----------------------------------------------------------------------------
    def list_areas(self, principal: Principal, site_id: int) -> list[dict[str, Any]]:
        self.db.get_site(principal.org_id, site_id)
        return with_paths(self.db.list_areas(principal.org_id, site_id))

    def get_area(self, principal: Principal, area_id: int) -> dict[str, Any]:
        area = self.db.get_area(principal.org_id, area_id)
        siblings = self.db.list_areas(principal.org_id, area["site_id"])
        return next(a for a in with_paths(siblings) if a["id"] == area_id)

    def create_area(
        self,
        principal: Principal,
        site_id: int,
        name: str,
        kind: str | None = None,
        parent_id: int | None = None,
    ) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        self.db.get_site(principal.org_id, site_id)
        name = _area_name(name)
        if parent_id is not None:
            parent = self.db.get_area(principal.org_id, parent_id)
            if parent["site_id"] != site_id:
                raise InvalidInput("the parent area belongs to another site")
            if len(self._ancestors(principal.org_id, parent_id)) >= MAX_AREA_DEPTH:
                raise InvalidInput(f"areas nest at most {MAX_AREA_DEPTH} deep")
        area_id = self.db.create_area(site_id, name, _area_kind(kind), parent_id)
        return self.get_area(principal, area_id)

    def update_area(
        self, principal: Principal, area_id: int, values: dict[str, Any]
    ) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        area = self.db.get_area(principal.org_id, area_id)
        changes: dict[str, Any] = {}
        if "name" in values:
            changes["name"] = _area_name(values["name"])
        if "kind" in values:
            changes["kind"] = _area_kind(values["kind"])
        if "parent_id" in values:
            parent_id = values["parent_id"]
            if parent_id is not None:
                parent = self.db.get_area(principal.org_id, parent_id)
                if parent["site_id"] != area["site_id"]:
                    raise InvalidInput("the parent area belongs to another site")
                if area_id in self._ancestors(principal.org_id, parent_id) | {parent_id}:
                    raise InvalidInput("an area cannot be inside itself or its own sub-area")
            changes["parent_id"] = parent_id
        if changes:
            self.db.update_area(area_id, changes)
        return self.get_area(principal, area_id)

    def delete_area(self, principal: Principal, area_id: int) -> None:
        principal.require(Role.ADMIN)
        self.db.get_area(principal.org_id, area_id)
        self.db.delete_area(area_id)

    def _ancestors(self, org_id: int, area_id: int) -> set[int]:
        by_id = {a["id"]: a for a in self.db.list_areas(org_id)}
        seen: set[int] = set()
        parent = by_id[area_id]["parent_id"] if area_id in by_id else None
        while parent is not None and parent not in seen:
            seen.add(parent)
            parent = by_id[parent]["parent_id"] if parent in by_id else None
        return seen

    def area_subtree(self, principal: Principal, area_id: int) -> list[int]:
        """The area and every area below it (what "the devices of floor 2" means)."""
        area = self.db.get_area(principal.org_id, area_id)
        children: dict[int | None, list[int]] = {}
        for a in self.db.list_areas(principal.org_id, area["site_id"]):
            children.setdefault(a["parent_id"], []).append(a["id"])
        out, todo = [], [area_id]
        while todo:
            current = todo.pop()
            if current in out:
                continue
            out.append(current)
            todo.extend(children.get(current, ()))
        return out

    # -- devices --------------------------------------------------------------------------
    def _placement(
        self, principal: Principal, site_id: int | None, area_id: int | None
    ) -> tuple[int | None, int | None]:
        """Check a (site, area) pair belongs to the caller; an area alone implies its site."""
        if site_id is not None:
            self.db.get_site(principal.org_id, site_id)  # 404 for another org's site
        if area_id is not None:
            area = self.db.get_area(principal.org_id, area_id)
            if site_id is None:
                site_id = area["site_id"]
            elif area["site_id"] != site_id:
                raise InvalidInput(f"area {area_id} is not on site {site_id}")
        return site_id, area_id

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
        site_id, area_id = self._placement(principal, site_id, area_id)
        token = new_secret(DEVICE_TOKEN_PREFIX)
        values = device_values(
            name=name,
            kind=kind,
            protocol=protocol,
            uid=uid,
            topic=topic,
            identifiers=identifiers,
            location=location,
            key_map=key_map,
            model=model,
            firmware=firmware,
        )
        values.update(
            org_id=principal.org_id,
            site_id=site_id,
            area_id=area_id,
            token_hash=hash_secret(token),
        )
        device_id = self.db.create_device(values, check_channels(channels))
        return self.get_device(principal, device_id), token

    def get_device(self, principal: Principal, device_id: int) -> dict[str, Any]:
        device = self.db.get_device(principal.org_id, device_id)
        device["channels"] = self.db.list_channels(device_id)
        return device

    def update_device(
        self, principal: Principal, device_id: int, values: dict[str, Any]
    ) -> dict[str, Any]:
        """Change a device's description, place or protocol address (PATCH semantics)."""
        principal.require(Role.ADMIN)
        device = self.db.get_device(principal.org_id, device_id)
        changes: dict[str, Any] = {}
        if "site_id" in values or "area_id" in values:
            site_id = values.get("site_id", device["site_id"])
            area_id = values.get("area_id", device["area_id"])
            if "site_id" in values and "area_id" not in values and site_id != device["site_id"]:
                area_id = None  # moved to another site: the old area is not there
            changes["site_id"], changes["area_id"] = self._placement(principal, site_id, area_id)
        described: dict[str, Any] = {k: values[k] for k in _DESCRIBED if k in values}
        if described:
            merged: dict[str, Any] = {**device, **described}
            # A protocol change without a topic keeps a topic that was set, and a default
            # one (the uid) stays the default.
            if "protocol" in described and "topic" not in described:
                merged["topic"] = None if device["topic"] == device["uid"] else device["topic"]
            full = device_values(
                name=merged["name"],
                kind=merged["kind"],
                protocol=merged["protocol"],
                uid=merged["uid"],
                topic=merged["topic"],
                identifiers=merged["identifiers"],
                location=merged["location"],
                key_map=merged["key_map"],
                model=merged["model"],
                firmware=merged["firmware"],
            )
            changes.update({k: v for k, v in full.items() if v != device.get(k)})
        if "channels" in values:
            for channel in values["channels"] or []:
                name = check_channels([channel["name"]])[0]
                flags = {k: channel[k] for k in ("appliance", "submeter") if k in channel}
                self.db.upsert_channel(device_id, name, flags)
        if changes:
            self.db.update_device(device_id, changes)
            if {"uid", "protocol", "topic"} & set(changes):
                self._credentials_changed(device_id)
        return self.get_device(principal, device_id)

    def set_channel(
        self, principal: Principal, device_id: int, name: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        self.db.get_device(principal.org_id, device_id)
        self.db.upsert_channel(device_id, check_channels([name])[0], values)
        return next(c for c in self.db.list_channels(device_id) if c["name"] == name)

    def delete_device(self, principal: Principal, device_id: int) -> None:
        principal.require(Role.ADMIN)
        self.db.get_device(principal.org_id, device_id)
        self.db.delete_device(device_id)
        self._credentials_changed(device_id)

    def rotate_device_token(self, principal: Principal, device_id: int) -> str:
        principal.require(Role.ADMIN)
        self.db.get_device(principal.org_id, device_id)
        token = new_secret(DEVICE_TOKEN_PREFIX)
        self.db.update_device(device_id, {"token_hash": hash_secret(token)})
        self._credentials_changed(device_id)
        return token

    def device_for_token(self, token: str) -> dict[str, Any]:
        """The device a device token belongs to (AuthError when none does)."""
        if not token:
            raise AuthError("missing device token")
        device = self.db.device_by(token_hash=hash_secret(token))
        if device is None or device["org_id"] is None:
            raise AuthError("invalid device token")
        return device

    # -- pre-registration, claiming, provisioning -----------------------------------------
    def preregister_device(
        self,
        *,
        name: str,
        kind: DeviceKind = DeviceKind.PLUG,
        protocol: DeviceProtocol = DeviceProtocol.NATIVE,
        uid: str | None = None,
        topic: str | None = None,
        channels: list[str] | None = None,
        identifiers: dict[str, str] | None = None,
        model: str | None = None,
        firmware: str | None = None,
        key_map: dict[str, str] | None = None,
        claim_code: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """A device made before anyone owns it (factory, installer): no organisation, no
        token, a claim code (given, as printed on the label, or generated). Returns the
        record and the claim code, which is stored only hashed."""
        code = check_claim_code(claim_code) if claim_code else new_claim_code()
        values = device_values(
            name=name,
            kind=kind,
            protocol=protocol,
            uid=uid,
            topic=topic,
            identifiers=identifiers,
            location=None,
            key_map=key_map,
            model=model,
            firmware=firmware,
        )
        values.update(org_id=None, token_hash=None, claim_code_hash=hash_claim_code(code))
        try:
            device_id = self.db.create_device(values, check_channels(channels))
        except Conflict:
            raise Conflict(
                "a device with this uid, protocol and topic, or claim code already exists"
            ) from None
        device = self.db.device_by(id=device_id)
        assert device is not None
        return device, code

    def claim_device(
        self,
        principal: Principal,
        claim_code: str,
        site_id: int,
        area_id: int | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Bind the unclaimed device with this claim code to the caller's organisation and
        site. A wrong code and a device claimed by someone else look the same (404)."""
        principal.require(Role.ADMIN)
        self.claim_limiter.check(f"user:{principal.user_id}:{principal.email}", "claim")
        self.claim_limiter.check(f"org:{principal.org_id}", "claim")
        placed_site, area_id = self._placement(principal, site_id, area_id)
        check_claim_code(claim_code)
        device = self.db.device_by(claim_code_hash=hash_claim_code(claim_code))
        if device is None or device["org_id"] not in (None, principal.org_id):
            raise NotFound("no unclaimed device has this claim code")
        if device["org_id"] == principal.org_id:
            raise Conflict(f"your organisation already claimed this device ({device['name']})")
        values: dict[str, Any] = {
            "org_id": principal.org_id,
            "site_id": placed_site,
            "area_id": area_id,
        }
        if name:
            values["name"] = _device_name(name)
        if not self.db.claim_device(device["id"], values):
            raise NotFound("no unclaimed device has this claim code")
        return self.get_device(principal, device["id"])

    def provision(self, uid: str, claim_code: str) -> dict[str, Any]:
        """A device's first contact: with its uid and claim code it gets its token, once,
        after a user has claimed it. Before that: Conflict ("not claimed yet", retry later)."""
        self.claim_limiter.check(f"provision:{uid[:64]}", "provisioning")
        device = self.db.device_by(uid=uid) if _UID_RE.match(uid or "") else None
        expected = device["claim_code_hash"] if device is not None else None
        given = hash_claim_code(claim_code or "")
        if device is None or not expected or not hmac.compare_digest(expected, given):
            raise AuthError("unknown device or wrong claim code")
        if device["org_id"] is None:
            raise Conflict("the device is not claimed yet: retry after its owner claimed it")
        token = new_secret(DEVICE_TOKEN_PREFIX)
        if not self.db.hand_out_token(device["id"], hash_secret(token)):
            raise Conflict(
                "this device already received its token; an admin can reopen provisioning "
                "(POST /api/v1/devices/{id}/provisioning) or rotate the token"
            )
        return {
            "uid": device["uid"],
            "token": token,
            "protocol": device["protocol"],
            "topic": device["topic"],
        }

    def reopen_provisioning(self, principal: Principal, device_id: int) -> dict[str, Any]:
        """Revoke the device's token so it can fetch a new one with its claim code (the
        device was reset, or the first answer was lost)."""
        principal.require(Role.ADMIN)
        device = self.db.get_device(principal.org_id, device_id)
        if not device["claim_code_hash"]:
            raise Conflict("this device has no claim code: rotate its token instead")
        self.db.update_device(device_id, {"token_hash": None})
        self._credentials_changed(device_id)
        return self.get_device(principal, device_id)


def _area_name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200 or "/" in name:
        raise InvalidInput("an area name has 1-200 characters and no '/'")
    return name.strip()


def _area_kind(kind: Any) -> str | None:
    if kind is None or kind == "":
        return None
    if not isinstance(kind, str) or len(kind) > 32:
        raise InvalidInput("an area kind (room, floor, line …) has at most 32 characters")
    return kind.strip().lower()


def with_paths(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each area with its ``path`` ("Floor 2/Meeting room A") and ``depth``."""
    by_id = {a["id"]: a for a in rows}
    for area in rows:
        names: list[str] = []
        seen: set[int] = set()
        current: dict[str, Any] | None = area
        while current is not None and current["id"] not in seen:
            seen.add(current["id"])
            names.append(current["name"])
            parent = current["parent_id"]
            current = by_id.get(parent) if parent is not None else None
        area["path"] = "/".join(reversed(names))
        area["depth"] = len(names) - 1
    return rows


def _device_name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise InvalidInput("a device name has 1-200 characters")
    return name.strip()


def _text_map(value: Any, what: str, *, max_items: int = 20) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > max_items:
        raise InvalidInput(f"{what} is an object of at most {max_items} text values")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 40:
            raise InvalidInput(f"{what}: keys have 1-40 characters")
        if (
            not isinstance(item, str | int | float)
            or isinstance(item, bool)
            or len(str(item)) > 200
        ):
            raise InvalidInput(f"{what}.{key}: a text of at most 200 characters")
        out[key] = str(item).strip()
    return out


def _location(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 20:
        raise InvalidInput("location is an object of at most 20 fields")
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 40:
            raise InvalidInput("location: keys have 1-40 characters")
        if item is not None and not isinstance(item, str | int | float | bool):
            raise InvalidInput(f"location.{key}: a text, number or boolean")
        if isinstance(item, str) and len(item) > 200:
            raise InvalidInput(f"location.{key}: at most 200 characters")
    return dict(value)


def check_channels(names: list[str] | None) -> list[str]:
    names = list(names) if names else [DEFAULT_CHANNEL]
    from wattwatch.store.registry import MAX_CHANNELS_PER_DEVICE

    if len(names) > MAX_CHANNELS_PER_DEVICE:
        raise InvalidInput(f"a device has at most {MAX_CHANNELS_PER_DEVICE} channels")
    for name in names:
        if not isinstance(name, str) or not _CHANNEL_RE.match(name):
            raise InvalidInput(
                f"channel {str(name)[:40]!r}: 1-64 letters, digits and _ . : - (e.g. mains, "
                "phase_a, ac01)"
            )
    if len(set(names)) != len(names):
        raise InvalidInput("channel names must be distinct")
    return names


# Device columns a PATCH may change besides its place (site, area) and channels.
_DESCRIBED: tuple[str, ...] = (
    "name",
    "kind",
    "protocol",
    "uid",
    "topic",
    "identifiers",
    "location",
    "key_map",
    "model",
    "firmware",
)
_CHANNEL_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def device_values(
    *,
    name: Any,
    kind: Any,
    protocol: Any,
    uid: Any,
    topic: Any,
    identifiers: Any,
    location: Any,
    key_map: Any,
    model: Any,
    firmware: Any,
) -> dict[str, Any]:
    """Validated registry columns describing a device (``InvalidInput`` says what is wrong)."""
    try:
        kind = DeviceKind(kind)
    except ValueError:
        raise InvalidInput(f"kind must be one of {', '.join(DeviceKind)}") from None
    try:
        protocol = DeviceProtocol(protocol)
    except ValueError:
        raise InvalidInput(f"protocol must be one of {', '.join(DeviceProtocol)}") from None
    uid = uid or f"ww-{secrets.token_hex(6)}"
    if not isinstance(uid, str) or not _UID_RE.match(uid):
        raise InvalidInput("uid may use letters, digits and _ . : - (at most 64)")
    topic = topic or uid
    if not isinstance(topic, str) or not _TOPIC_RE.match(topic):
        raise InvalidInput("topic must not contain spaces, + or #, nor start with /")
    problem = check_device_topic(protocol, topic)
    if problem:
        raise InvalidInput(f"topic: {problem}")
    for value, what, limit in ((model, "model", 120), (firmware, "firmware", 60)):
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise InvalidInput(f"{what} is a text of at most {limit} characters")
    return {
        "uid": uid,
        "name": _device_name(name),
        "kind": str(kind),
        "protocol": str(protocol),
        "topic": topic,
        "model": model or None,
        "firmware": firmware or None,
        "identifiers": _text_map(identifiers, "identifiers"),
        "location": _location(location),
        "key_map": _text_map(key_map, "key_map", max_items=100),
    }
