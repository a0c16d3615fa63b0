"""Registry tables (SQLAlchemy Core, the same on SQLite and PostgreSQL) and schema versioning."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Bump when the schema changes, and add the step to ``MIGRATIONS`` in the backend modules.
SCHEMA_VERSION = 1

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

organisations = Table(
    "organisations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("must_change_password", Boolean, nullable=False, default=False),
    Column("created_ms", BigInteger, nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(16), nullable=False),
)

# Login tokens and API keys: only a SHA-256 of the random secret is stored.
auth_tokens = Table(
    "auth_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # login | api_key
    Column("name", String(200), nullable=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("scope", String(16), nullable=True),  # max role for API keys
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
)

sites = Table(
    "sites",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("tariff", JSON, nullable=False),
    Column("address", Text, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_sites_org", "org_id"),
)

areas = Table(
    "areas",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("site_id", ForeignKey("sites.id", ondelete="CASCADE"), nullable=False),
    Column("parent_id", ForeignKey("areas.id", ondelete="CASCADE"), nullable=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(32), nullable=True),
    Index("ix_areas_site", "site_id"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(64), nullable=False, unique=True),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=True),
    Column("site_id", ForeignKey("sites.id", ondelete="SET NULL"), nullable=True),
    Column("area_id", ForeignKey("areas.id", ondelete="SET NULL"), nullable=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("protocol", String(16), nullable=False),
    # The protocol's own address of the device: Tasmota topic, Shelly prefix (uid otherwise).
    Column("topic", String(128), nullable=False),
    Column("model", String(120), nullable=True),
    Column("firmware", String(60), nullable=True),
    Column("identifiers", JSON, nullable=False),
    Column("location", JSON, nullable=True),
    Column("key_map", JSON, nullable=False),
    Column("token_hash", String(64), nullable=True, unique=True),
    Column("claim_code_hash", String(64), nullable=True, unique=True),
    Column("online", Boolean, nullable=True),
    Column("state", Integer, nullable=True),
    Column("last_seen_ms", BigInteger, nullable=True),
    Column("status_changed_ms", BigInteger, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("protocol", "topic", name="uq_devices_protocol_topic"),
    Index("ix_devices_org", "org_id"),
    Index("ix_devices_site", "site_id"),
)

channels = Table(
    "channels",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("appliance", String(120), nullable=True),
    # A sub-meter (a plug or circuit behind another channel of the site) is left out of site
    # totals so nothing is counted twice.
    Column("submeter", Boolean, nullable=False, default=False),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("device_id", "name", name="uq_channels_device_name"),
)
