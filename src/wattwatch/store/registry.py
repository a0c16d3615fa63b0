"""Registry persistence (SQLAlchemy Core): organisations, users, tokens, sites, devices, channels.

Backend-neutral: the SQLite and PostgreSQL stores share it. Every query that a user can
reach takes the caller's ``org_id``, so a record of another organisation is simply not found.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, Select, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from wattwatch.domain import now_ms
from wattwatch.errors import Conflict, InvalidInput, NotFound
from wattwatch.store.records import Record, SqlRecordStore
from wattwatch.store.schema import (
    areas,
    auth_tokens,
    channels,
    devices,
    memberships,
    organisations,
    sites,
    users,
)

# A device may grow channels by reporting them (multi-circuit panels), up to this many.
MAX_CHANNELS_PER_DEVICE = 64


def org_areas(org_id: int) -> Select[Any]:
    """The areas of the organisation: an area belongs to it through its site."""
    return select(areas).join(sites, sites.c.id == areas.c.site_id).where(sites.c.org_id == org_id)


class SqlRegistry(SqlRecordStore):
    def __init__(self, engine: Engine, read_engine: Engine | None = None) -> None:
        super().__init__(engine, read_engine)
        self._channel_ids: dict[tuple[int, str], int] = {}
        self._channel_tz: dict[int, str] = {}
        self._lock = threading.Lock()

    def forget_caches(self) -> None:
        with self._lock:
            self._channel_ids.clear()
            self._channel_tz.clear()

    # -- organisations and users ----------------------------------------------------------
    def create_org(self, name: str) -> int:
        return self._insert(organisations, {"name": name, "created_ms": now_ms()})

    def first_org_id(self) -> int | None:
        rows = self._read(select(organisations.c.id).order_by(organisations.c.id).limit(1))
        return rows[0]["id"] if rows else None

    def count_users(self) -> int:
        with self.read_engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(users)).scalar_one())

    def create_user(
        self, email: str, password_hash: str, org_id: int, role: str, *, must_change: bool = False
    ) -> int:
        try:
            with self.engine.begin() as conn:
                uid = int(
                    conn.execute(
                        insert(users).values(
                            email=email.lower(),
                            password_hash=password_hash,
                            must_change_password=must_change,
                            created_ms=now_ms(),
                        )
                    ).inserted_primary_key[0]  # type: ignore[index]
                )
                conn.execute(insert(memberships).values(user_id=uid, org_id=org_id, role=role))
                return uid
        except IntegrityError:
            raise Conflict(f"a user with email {email} already exists") from None

    def user_by_email(self, email: str) -> Record | None:
        return self._read_first(select(users).where(users.c.email == email.lower()))

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        self._update(
            users, user_id, {"password_hash": password_hash, "must_change_password": False}
        )

    def memberships_of(self, user_id: int) -> list[Record]:
        return self._read(
            select(memberships.c.org_id, memberships.c.role).where(memberships.c.user_id == user_id)
        )

    def list_users(self, org_id: int) -> list[Record]:
        return self._read(
            select(users.c.id, users.c.email, memberships.c.role, users.c.created_ms)
            .join(memberships, memberships.c.user_id == users.c.id)
            .where(memberships.c.org_id == org_id)
            .order_by(users.c.id)
        )

    # -- login tokens and API keys --------------------------------------------------------
    def create_auth_token(
        self,
        token_hash: str,
        *,
        kind: str,
        user_id: int,
        org_id: int,
        expires_ms: int | None,
        scope: str | None = None,
        name: str | None = None,
    ) -> int:
        return self._insert(
            auth_tokens,
            {
                "token_hash": token_hash,
                "kind": kind,
                "user_id": user_id,
                "org_id": org_id,
                "expires_ms": expires_ms,
                "scope": scope,
                "name": name,
                "created_ms": now_ms(),
                "revoked": False,
            },
        )

    def auth_token(self, token_hash: str) -> Record | None:
        """The live token with this hash joined with its user's role in the token's org."""
        return self._read_first(
            select(
                auth_tokens.c.id,
                auth_tokens.c.kind,
                auth_tokens.c.name,
                auth_tokens.c.user_id,
                auth_tokens.c.org_id,
                auth_tokens.c.scope,
                auth_tokens.c.expires_ms,
                memberships.c.role,
                users.c.email,
            )
            .join(
                memberships,
                (memberships.c.user_id == auth_tokens.c.user_id)
                & (memberships.c.org_id == auth_tokens.c.org_id),
            )
            .join(users, users.c.id == auth_tokens.c.user_id)
            .where(auth_tokens.c.token_hash == token_hash, auth_tokens.c.revoked.is_(False))
        )

    def revoke_auth_token(self, token_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(auth_tokens)
                .where(auth_tokens.c.token_hash == token_hash)
                .values(revoked=True)
            )

    # -- sites ----------------------------------------------------------------------------
    def create_site(
        self, org_id: int, name: str, timezone: str, tariff: Record, address: str | None
    ) -> int:
        return self._insert(
            sites,
            {
                "org_id": org_id,
                "name": name,
                "timezone": timezone,
                "tariff": tariff,
                "address": address,
                "created_ms": now_ms(),
            },
        )

    def list_sites(self, org_id: int) -> list[Record]:
        return self._list_owned(sites, org_id)

    def get_site(self, org_id: int, site_id: int) -> Record:
        return self._read_owned(sites, org_id, site_id, "site")

    def update_site(self, org_id: int, site_id: int, values: Record) -> None:
        self.get_site(org_id, site_id)
        if not values:
            return  # an empty PATCH: an UPDATE without SET is not SQL
        self._update(sites, site_id, values)
        self.forget_caches()

    def delete_site(self, org_id: int, site_id: int) -> None:
        self.get_site(org_id, site_id)
        self._delete(sites, site_id)
        self.forget_caches()

    # -- devices --------------------------------------------------------------------------
    def create_device(
        self, values: Record, channel_names: Iterable[str], *, submeter: bool = False
    ) -> int:
        try:
            with self.engine.begin() as conn:
                dev_id = int(
                    conn.execute(
                        insert(devices).values(created_ms=now_ms(), **values)
                    ).inserted_primary_key[0]  # type: ignore[index]
                )
                for name in channel_names:
                    conn.execute(
                        insert(channels).values(
                            device_id=dev_id, name=name, submeter=submeter, created_ms=now_ms()
                        )
                    )
                return dev_id
        except IntegrityError as exc:
            raise Conflict(
                "a device with this uid, or this protocol and topic, already exists"
            ) from exc

    def list_devices(self, org_id: int, site_id: int | None = None) -> list[Record]:
        stmt = select(devices).where(devices.c.org_id == org_id)
        if site_id is not None:
            stmt = stmt.where(devices.c.site_id == site_id)
        return self._read(stmt.order_by(devices.c.id))

    def get_device(self, org_id: int, device_id: int) -> Record:
        return self._read_owned(devices, org_id, device_id, "device")

    def device_by(self, **where: Any) -> Record | None:
        stmt = select(devices)
        for key, value in where.items():
            stmt = stmt.where(devices.c[key] == value)
        return self._read_first(stmt)

    def update_device(self, device_id: int, values: Record) -> None:
        try:
            self._update(devices, device_id, values)
        except IntegrityError as exc:
            raise Conflict("that uid, or protocol and topic, is taken by another device") from exc
        self.forget_caches()

    def delete_device(self, device_id: int) -> None:
        self._delete(devices, device_id)
        self.forget_caches()

    def all_devices(self) -> list[Record]:
        """Every device of every organisation (broker configuration exports; not for users)."""
        return self._read(select(devices).order_by(devices.c.id))

    # Columns the MQTT presence tracker may write (a deleted device's update changes nothing).
    STATUS_COLUMNS = frozenset({"online", "last_seen_ms", "status_changed_ms", "firmware"})

    def record_device_status(self, updates: Iterable[tuple[int, Record]]) -> None:
        """Write presence (online, last_seen_ms, status_changed_ms, firmware) in one transaction.

        Unlike ``update_device`` this keeps the channel caches: it runs every few seconds.
        """
        # One executemany per set of columns: a thousand devices coming online is one
        # statement, not a thousand.
        groups: dict[tuple[str, ...], list[Record]] = {}
        for device_id, values in updates:
            unknown = set(values) - self.STATUS_COLUMNS
            if unknown:
                raise ValueError(f"not status columns: {sorted(unknown)}")
            groups.setdefault(tuple(sorted(values)), []).append({"_id": device_id, **values})
        if not groups:
            return
        with self.engine.begin() as conn:
            for columns, params in groups.items():
                stmt = (
                    update(devices)
                    .where(devices.c.id == bindparam("_id"))
                    .values({c: bindparam(c) for c in columns})
                )
                conn.execute(stmt, params)

    def site_channels(self, org_id: int, site_id: int) -> list[Record]:
        """Channels of the site's devices that count toward its totals (not sub-meters)."""
        return self._read(
            select(channels.c.id, channels.c.name, devices.c.id.label("device_id"))
            .join(devices, devices.c.id == channels.c.device_id)
            .where(
                devices.c.org_id == org_id,
                devices.c.site_id == site_id,
                channels.c.submeter.is_(False),
            )
            .order_by(channels.c.id)
        )

    # -- channels -------------------------------------------------------------------------
    def list_channels(self, device_id: int) -> list[Record]:
        return self._read(
            select(channels).where(channels.c.device_id == device_id).order_by(channels.c.id)
        )

    def update_channel(self, device_id: int, name: str, values: Record) -> None:
        """Set a channel's ``submeter`` flag and/or ``appliance`` label."""
        unknown = set(values) - {"submeter", "appliance"}
        if unknown:
            raise InvalidInput(f"channels have no settable {', '.join(sorted(unknown))}")
        with self.engine.begin() as conn:
            done = conn.execute(
                update(channels)
                .where(channels.c.device_id == device_id, channels.c.name == name)
                .values(**values)
            ).rowcount
        if not done:
            raise NotFound(f"device {device_id} has no channel {name!r}")

    def channel_ids_of(self, device_id: int, names: Iterable[str] | None = None) -> dict[str, int]:
        stmt = select(channels.c.name, channels.c.id).where(channels.c.device_id == device_id)
        if names is not None:
            stmt = stmt.where(channels.c.name.in_(list(names)))
        return {r["name"]: r["id"] for r in self._read(stmt)}

    def cache_channels(self, up_to_device_id: int) -> int:
        """Put the ids of every channel of devices 1..``up_to_device_id`` in the cache that
        ``resolve_channel`` reads, with one query; returns how many."""
        stmt = select(channels.c.device_id, channels.c.name, channels.c.id).where(
            channels.c.device_id <= up_to_device_id
        )
        rows = self._read(stmt)
        with self._lock:
            for r in rows:
                self._channel_ids[(r["device_id"], r["name"])] = r["id"]
        return len(rows)

    def resolve_channel(self, device_id: int, name: str) -> int:
        """The id of channel ``name`` of the device, created on first use (bounded)."""
        key = (device_id, name)
        cached = self._channel_ids.get(key)
        if cached is not None:
            return cached
        with self._lock:
            found = self.channel_ids_of(device_id, [name])
            if name not in found:
                existing = len(self.channel_ids_of(device_id))
                if existing >= MAX_CHANNELS_PER_DEVICE:
                    raise InvalidInput(
                        f"unknown channel {name!r}: the device already has "
                        f"{MAX_CHANNELS_PER_DEVICE} channels"
                    )
                try:
                    with self.engine.begin() as conn:
                        conn.execute(
                            insert(channels).values(
                                device_id=device_id,
                                name=name,
                                submeter=False,
                                created_ms=now_ms(),
                            )
                        )
                except IntegrityError:
                    pass  # created concurrently
                found = self.channel_ids_of(device_id, [name])
            self._channel_ids[key] = found[name]
            return found[name]

    def channel_timezones(self, channel_ids: Iterable[int], cur: Any = None) -> dict[int, str]:
        """Timezone of each channel's site (UTC for devices not placed on a site yet)."""
        missing = [ch for ch in channel_ids if ch not in self._channel_tz]
        if missing:
            # Raw driver SQL (it may run on the writer's cursor): sqlite3 marks "?", psycopg "%s".
            mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
            marks = ", ".join([mark] * len(missing))
            sql = (
                "SELECT c.id, s.timezone FROM channels c JOIN devices d ON d.id = c.device_id "
                f"LEFT JOIN sites s ON s.id = d.site_id WHERE c.id IN ({marks})"
            )
            if cur is not None:
                rows = cur.execute(sql, missing).fetchall()
            else:
                with self.read_engine.connect() as conn:
                    rows = conn.exec_driver_sql(sql, tuple(missing)).all()
            for ch, tz in rows:
                self._channel_tz[ch] = tz or "UTC"
        return {ch: self._channel_tz.get(ch, "UTC") for ch in channel_ids}

    # -- areas (issue 4) ------------------------------------------------------------------
    def create_area(self, site_id: int, name: str, kind: str | None, parent_id: int | None) -> int:
        return self._insert(
            areas, {"site_id": site_id, "name": name, "kind": kind, "parent_id": parent_id}
        )

    def list_areas(self, org_id: int, site_id: int | None = None) -> list[Record]:
        """Areas of the organisation (of one site), parents before children where ids allow."""
        stmt = org_areas(org_id)
        if site_id is not None:
            stmt = stmt.where(areas.c.site_id == site_id)
        return self._read(stmt.order_by(areas.c.id))

    def get_area(self, org_id: int, area_id: int) -> Record:
        return self._read_one(org_areas(org_id).where(areas.c.id == area_id), "area")

    def update_area(self, area_id: int, values: Record) -> None:
        self._update(areas, area_id, values)

    def delete_area(self, area_id: int) -> None:
        """Sub-areas go with it (FK cascade); its devices stay on the site without an area."""
        self._delete(areas, area_id)
        self.forget_caches()

    # -- devices: selection, claiming, one-time token hand-out (issue 4) ------------------
    def select_devices(
        self,
        org_id: int,
        *,
        site_id: int | None = None,
        area_ids: Iterable[int] | None = None,
        device_ids: Iterable[int] | None = None,
        kind: str | None = None,
        appliance: str | None = None,
    ) -> list[Record]:
        """Devices of the organisation matching every filter given; ``appliance`` matches a
        channel's appliance label case-insensitively."""
        stmt = select(devices).where(devices.c.org_id == org_id)
        if site_id is not None:
            stmt = stmt.where(devices.c.site_id == site_id)
        if area_ids is not None:
            stmt = stmt.where(devices.c.area_id.in_(list(area_ids)))
        if device_ids is not None:
            stmt = stmt.where(devices.c.id.in_(list(device_ids)))
        if kind is not None:
            stmt = stmt.where(devices.c.kind == kind)
        if appliance is not None:
            stmt = stmt.where(
                devices.c.id.in_(
                    select(channels.c.device_id).where(
                        func.lower(channels.c.appliance) == appliance.lower()
                    )
                )
            )
        return self._read(stmt.order_by(devices.c.id))

    def claim_device(self, device_id: int, values: Record) -> bool:
        """Bind an unclaimed device (org still NULL) to an organisation; False if it was
        claimed meanwhile (two users racing for one code: exactly one wins)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(devices)
                .where(devices.c.id == device_id, devices.c.org_id.is_(None))
                .values(**values)
            ).rowcount
        self.forget_caches()
        return bool(done)

    def hand_out_token(self, device_id: int, token_hash: str) -> bool:
        """Set the device token only if it has none yet: a token is handed out once."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(devices)
                .where(devices.c.id == device_id, devices.c.token_hash.is_(None))
                .values(token_hash=token_hash)
            ).rowcount
        return bool(done)

    def upsert_channel(self, device_id: int, name: str, values: Record) -> None:
        """Create channel ``name`` of the device, or set its ``appliance``/``submeter``."""
        unknown = set(values) - {"submeter", "appliance"}
        if unknown:
            raise InvalidInput(f"channels have no settable {', '.join(sorted(unknown))}")
        existing = self.channel_ids_of(device_id)
        if name not in existing:
            if len(existing) >= MAX_CHANNELS_PER_DEVICE:
                raise InvalidInput(f"a device has at most {MAX_CHANNELS_PER_DEVICE} channels")
            with self.engine.begin() as conn:
                conn.execute(
                    insert(channels).values(
                        device_id=device_id,
                        name=name,
                        appliance=values.get("appliance"),
                        submeter=bool(values.get("submeter", False)),
                        created_ms=now_ms(),
                    )
                )
            return
        if values:
            self.update_channel(device_id, name, values)

    # -- users and roles (issue 4) ----------------------------------------------------------
    def get_member(self, org_id: int, user_id: int) -> Record:
        return self._read_one(
            select(users.c.id, users.c.email, memberships.c.role, users.c.created_ms)
            .join(memberships, memberships.c.user_id == users.c.id)
            .where(memberships.c.org_id == org_id, users.c.id == user_id),
            "user",
        )

    def count_owners(self, org_id: int) -> int:
        with self.read_engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(memberships)
                    .where(memberships.c.org_id == org_id, memberships.c.role == "owner")
                ).scalar_one()
            )

    def set_role(self, org_id: int, user_id: int, role: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(memberships)
                .where(memberships.c.org_id == org_id, memberships.c.user_id == user_id)
                .values(role=role)
            )

    def remove_member(self, org_id: int, user_id: int) -> None:
        """End the membership (its tokens stop working at once: they join on it); a user left
        in no organisation is deleted with their tokens."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(memberships).where(
                    memberships.c.org_id == org_id, memberships.c.user_id == user_id
                )
            )
            conn.execute(
                update(auth_tokens)
                .where(auth_tokens.c.org_id == org_id, auth_tokens.c.user_id == user_id)
                .values(revoked=True)
            )
            left = conn.execute(
                select(func.count())
                .select_from(memberships)
                .where(memberships.c.user_id == user_id)
            ).scalar_one()
            if not left:
                conn.execute(delete(users).where(users.c.id == user_id))

    # -- API keys (issue 4) -----------------------------------------------------------------
    _KEY_COLUMNS = (
        auth_tokens.c.id,
        auth_tokens.c.name,
        auth_tokens.c.scope,
        auth_tokens.c.user_id,
        auth_tokens.c.created_ms,
        auth_tokens.c.expires_ms,
        auth_tokens.c.revoked,
    )

    def list_api_keys(self, org_id: int, user_id: int | None = None) -> list[Record]:
        stmt = (
            select(*self._KEY_COLUMNS, users.c.email)
            .join(users, users.c.id == auth_tokens.c.user_id)
            .where(auth_tokens.c.org_id == org_id, auth_tokens.c.kind == "api_key")
        )
        if user_id is not None:
            stmt = stmt.where(auth_tokens.c.user_id == user_id)
        return self._read(stmt.order_by(auth_tokens.c.id))

    def get_api_key(self, org_id: int, key_id: int) -> Record:
        return self._read_one(
            select(*self._KEY_COLUMNS, users.c.email)
            .join(users, users.c.id == auth_tokens.c.user_id)
            .where(
                auth_tokens.c.org_id == org_id,
                auth_tokens.c.kind == "api_key",
                auth_tokens.c.id == key_id,
            ),
            "API key",
        )

    def revoke_api_key(self, key_id: int) -> None:
        self._update(auth_tokens, key_id, {"revoked": True})
