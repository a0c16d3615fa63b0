"""Registry tables (SQLAlchemy Core, the same on SQLite and PostgreSQL) and schema versioning."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.schema import CreateIndex, CreateTable

# Bump when the schema changes, and add the step to ``MIGRATIONS`` in the backend modules.
# 2: ai_labels, ai_models (issue 10).
SCHEMA_VERSION = 2

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

# -- alerts and hooks (DESIGN §5) ---------------------------------------------------------
# A rule's scope is one of device (+ optional channel), area or site; kind-specific
# settings (threshold, range, calendar, budget …) live in ``params``.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), nullable=True),
    Column("channel", String(64), nullable=True),
    Column("area_id", ForeignKey("areas.id", ondelete="CASCADE"), nullable=True),
    Column("site_id", ForeignKey("sites.id", ondelete="CASCADE"), nullable=True),
    Column("params", JSON, nullable=False),
    Column("notify", JSON, nullable=False),
    Column("created_by", String(320), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_alert_rules_org", "org_id"),
)

# One row per rule + target while it is open; repeat triggers update it (ThingsBoard alarms).
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("rule_id", ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False),
    Column("target", String(200), nullable=False),
    Column("device_id", Integer, nullable=True),
    Column("channel", String(64), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # active | acknowledged | cleared
    Column("message", Text, nullable=False),
    Column("value", JSON, nullable=True),
    Column("details", JSON, nullable=False),
    Column("count", Integer, nullable=False, default=1),
    Column("raised_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("acknowledged_ms", BigInteger, nullable=True),
    Column("acknowledged_by", String(320), nullable=True),
    Column("cleared_ms", BigInteger, nullable=True),
    Index("ix_alerts_org_state", "org_id", "state"),
    Index("ix_alerts_rule_target", "rule_id", "target"),
)

alert_history = Table(
    "alert_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("action", String(16), nullable=False),  # raised | updated | acknowledged | cleared
    Column("actor", String(320), nullable=True),
    Column("details", JSON, nullable=False),
    Index("ix_alert_history_alert", "alert_id"),
)

# The secret signs deliveries, so it is kept as given (it cannot be a hash); never listed.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("events", JSON, nullable=False),
    Column("secret", String(200), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_by", String(320), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_webhooks_org", "org_id"),
)

# Deliveries (webhook, email, MQTT) that failed every retry: kept to inspect and replay.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("webhook_id", ForeignKey("webhooks.id", ondelete="SET NULL"), nullable=True),
    Column("channel", String(16), nullable=False),  # webhook | email | mqtt
    Column("target", JSON, nullable=False),  # url / addresses / topic; never a secret
    Column("event", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("state", String(16), nullable=False),  # dead | replaying | delivered
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_dead_letters_org", "org_id", "state"),
)

# -- reports (issue 7) --------------------------------------------------------------------
# Per-site report settings: business hours and CO2 factor, as one JSON object
# (``wattwatch.reports.settings.ReportSettings``).
report_settings = Table(
    "report_settings",
    metadata,
    Column("site_id", ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True),
    Column("settings", JSON, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# "Every Monday 08:00 site time, the weekly report of this site to these addresses."
# Exactly one of site_id / area_id / device_id is set.
report_schedules = Table(
    "report_schedules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("site_id", ForeignKey("sites.id", ondelete="CASCADE"), nullable=True),
    Column("area_id", ForeignKey("areas.id", ondelete="CASCADE"), nullable=True),
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), nullable=True),
    Column("period", String(16), nullable=False),  # week | month | quarter
    Column("cron", String(120), nullable=False),  # in the site's timezone
    Column("recipients", JSON, nullable=False),
    Column("format", String(8), nullable=False),  # pdf | html
    Column("enabled", Boolean, nullable=False, default=True),
    Column("next_run_ms", BigInteger, nullable=False),
    Column("created_by", String(320), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_report_schedules_due", "enabled", "next_run_ms"),
    Index("ix_report_schedules_org", "org_id"),
)

# What was sent: one row per schedule and report period, so a restart never sends twice.
report_deliveries = Table(
    "report_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("schedule_id", ForeignKey("report_schedules.id", ondelete="CASCADE"), nullable=False),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("period_start_ms", BigInteger, nullable=False),
    Column("period_end_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # sending | sent | failed
    Column("attempts", Integer, nullable=False),
    Column("recipients", JSON, nullable=False),
    Column("attachment", String(200), nullable=True),
    Column("bytes", Integer, nullable=True),
    Column("link", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("sent_ms", BigInteger, nullable=True),
    UniqueConstraint("schedule_id", "period_start_ms", name="uq_report_deliveries_period"),
    Index("ix_report_deliveries_org", "org_id"),
)

# -- control (issue 4): on/off commands, their audit trail, schedules ----------------------
# One row per command sent to a device: who, when, what, outcome. The row is written before
# the command leaves (its id is the request id the device echoes) and completed with the
# answer. It outlives the device (device_id is then NULL; uid and name stay) so the trail of
# who switched what is never lost.
device_commands = Table(
    "device_commands",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("device_id", ForeignKey("devices.id", ondelete="SET NULL"), nullable=True),
    Column("device_uid", String(64), nullable=False),
    Column("device_name", String(200), nullable=False),
    Column("action", String(8), nullable=False),  # on | off | toggle
    Column("source", String(16), nullable=False),  # api | group | schedule | cli
    Column("actor", String(400), nullable=False),  # email (+ API key name) or "schedule N"
    Column("user_id", Integer, nullable=True),
    # Commands sent together (a site/area group command, one schedule run) share it.
    Column("group_id", String(32), nullable=True),
    Column("schedule_id", Integer, nullable=True),
    Column("protocol", String(16), nullable=False),
    Column("topic", String(300), nullable=True),
    Column("correlation_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),  # pending | ok | refused | timeout | error
    Column("state", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("requested_ms", BigInteger, nullable=False),
    Column("completed_ms", BigInteger, nullable=True),
    Index("ix_device_commands_device", "device_id", "id"),
    Index("ix_device_commands_org", "org_id", "id"),
)

# "Printers of floor 2 off 19:00, on 07:00 on weekdays": a target (site, area with its
# sub-areas, or one device; optionally only devices of a kind / channels feeding an appliance)
# and events ``[{"cron": "0 19 * * 1-5", "action": "off"}, …]`` in the site's timezone.
control_schedules = Table(
    "control_schedules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("site_id", ForeignKey("sites.id", ondelete="CASCADE"), nullable=False),
    Column("area_id", ForeignKey("areas.id", ondelete="CASCADE"), nullable=True),
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), nullable=True),
    Column("kind", String(16), nullable=True),
    Column("appliance", String(120), nullable=True),
    Column("events", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("next_run_ms", BigInteger, nullable=True),
    Column("created_by", String(400), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_control_schedules_due", "enabled", "next_run_ms"),
    Index("ix_control_schedules_org", "org_id"),
)

# Each time a schedule fired (or should have): one row per (schedule, due time, event), so a
# restart or a second replica never switches twice, and "did the printers go off on Friday?"
# has an answer.
control_schedule_runs = Table(
    "control_schedule_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("schedule_id", ForeignKey("control_schedules.id", ondelete="CASCADE"), nullable=False),
    Column("org_id", ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("event_index", Integer, nullable=False),
    Column("action", String(8), nullable=False),
    Column("due_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # running, ok, partial, failed, missed, empty
    Column("started_ms", BigInteger, nullable=False),
    Column("finished_ms", BigInteger, nullable=True),
    Column("targets", Integer, nullable=False, default=0),
    Column("succeeded", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("group_id", String(32), nullable=True),
    Column("details", JSON, nullable=False),
    UniqueConstraint("schedule_id", "due_ms", "event_index", name="uq_control_schedule_runs_slot"),
    Index("ix_control_schedule_runs_schedule", "schedule_id", "due_ms"),
)


# -- AI (issue 10): appliance labels and versioned models ---------------------------------
# "This was the kettle": one on-interval of an appliance behind a device's aggregate.
# source: user (API), seed (imported labelling period), plug (materialised from a sub-meter).
ai_labels = Table(
    "ai_labels",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("appliance", String(120), nullable=False),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=False),
    Column("source", String(8), nullable=False),
    Column("created_by", String(400), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_ai_labels_device", "device_id", "start_ms"),
)

# One row per trained model of a device: kind (nilm | clusters), a version counting up per
# (device, kind), the metrics it scored, and the blob ``wattwatch.ai.models.dump_model`` wrote.
ai_models = Table(
    "ai_models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("blob", LargeBinary, nullable=False),
    UniqueConstraint("device_id", "kind", "version", name="uq_ai_models_version"),
)

AI_TABLES = (ai_labels, ai_models)


def create_ddl(tables: tuple[Table, ...], dialect: Any) -> tuple[str, ...]:
    """CREATE TABLE / INDEX statements (IF NOT EXISTS) of ``tables`` for a migration step."""
    out: list[str] = []
    for table in tables:
        out.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            out.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))
    return tuple(out)
