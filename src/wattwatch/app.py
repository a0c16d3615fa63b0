"""Composition root: builds the store, services and pipeline, and wires them together."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from wattwatch.ai.service import AiScheduler, AiService
from wattwatch.alerts.engine import AlertEngine
from wattwatch.alerts.service import AlertService
from wattwatch.backup.maintenance import Maintenance
from wattwatch.config import Settings
from wattwatch.control.schedules import ControlScheduler
from wattwatch.control.service import ControlService
from wattwatch.control.sessions import SessionRevoker
from wattwatch.errors import ConfigError
from wattwatch.hooks.delivery import RetryPolicy
from wattwatch.hooks.dispatcher import HookDispatcher
from wattwatch.hooks.notifiers import SmtpConfig
from wattwatch.hooks.plugins import make_plugin_manager
from wattwatch.hooks.service import WebhookService
from wattwatch.ingest.limits import DeviceRateLimiter
from wattwatch.ingest.pipeline import IngestPipeline
from wattwatch.ingest.stats import IngestStats
from wattwatch.live import LiveHub
from wattwatch.queries.service import QueryService
from wattwatch.registry.service import Bootstrap, RegistryService
from wattwatch.reports.mail import ReportMailer, SmtpSettings
from wattwatch.reports.schedule import ReportScheduler
from wattwatch.reports.service import ReportService
from wattwatch.store.ai import SqlAiStore
from wattwatch.store.alerts import SqlAlertStore
from wattwatch.store.control import SqlControlStore
from wattwatch.store.reports import SqlReportStore
from wattwatch.store.sqlstore import SqlStore

if TYPE_CHECKING:
    from wattwatch.ingest.mqtt import MqttService


def open_store(settings: Settings, *, lock: bool) -> SqlStore:
    """The store the settings' database URL names: a SQLite file or a PostgreSQL database."""
    url = settings.store_url()
    if url.startswith("sqlite:"):
        from wattwatch.store.sqlite import SqliteStore

        return SqliteStore(url, lock=lock)
    if url.startswith(("postgresql:", "postgresql+psycopg:", "postgres:")):
        from wattwatch.store.postgres import PostgresStore

        return PostgresStore(url, lock=lock)
    raise ConfigError(f"database URL {url.split('@')[-1]!r}: use sqlite:/// or postgresql://")


_Smtp = TypeVar("_Smtp", bound=SmtpConfig)


def smtp_of(settings: Settings, kind: type[_Smtp]) -> _Smtp | None:
    """The SMTP server the settings name (alert and report emails share it), or None."""
    if not settings.smtp_host:
        return None
    return kind(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_from,
        settings.smtp_username,
        settings.smtp_password,
        settings.smtp_starttls,
    )


@dataclass
class Wattwatch:
    """One running wattwatch: what the HTTP API, the broker and the CLI talk to."""

    settings: Settings
    store: SqlStore
    registry: RegistryService
    queries: QueryService
    pipeline: IngestPipeline
    stats: IngestStats
    bootstrap: Bootstrap | None = None
    live: LiveHub = field(default_factory=LiveHub)
    reports: ReportService | None = None
    report_scheduler: ReportScheduler | None = None
    maintenance: Maintenance | None = None
    alerts: AlertService | None = None
    hooks: HookDispatcher | None = None
    webhooks: WebhookService | None = None
    # On/off commands with their audit trail, and schedules (built in __post_init__).
    control: ControlService | None = None
    schedules: ControlScheduler | None = None
    revoker: SessionRevoker | None = None
    # MQTT (embedded broker or external-broker client): built by ``enable_mqtt``.
    mqtt: MqttService | None = None
    # Appliance detection, forecasts, model lifecycle; retraining and anomaly checks.
    ai: AiService | None = None
    ai_scheduler: AiScheduler | None = None
    # Per-device ingest rate limit, shared by HTTP, ThingsBoard HTTP and the embedded broker.
    limits: DeviceRateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limits = DeviceRateLimiter(
            self.settings.device_rate_readings_per_s,
            self.settings.device_burst_readings,
            stats=self.stats,
        )
        if self.control is None:
            self.control, self.schedules, self.revoker = build_control(self)

    @classmethod
    def open(cls, settings: Settings, *, lock: bool = True) -> Wattwatch:
        store = open_store(settings, lock=lock)
        stats = IngestStats()
        registry = RegistryService(store.registry, login_ttl_s=settings.login_token_ttl_s)
        pipeline = IngestPipeline(
            store,
            store.registry,
            stats,
            queue_readings=settings.ingest_queue_readings,
            batch_readings=settings.ingest_batch_readings,
            decode_processes=settings.decode_processes,
        )
        alerts, hooks, webhooks = build_alerts_and_hooks(settings, store, pipeline)
        reports, report_scheduler = build_reports(settings, store)
        ai, ai_scheduler = build_ai(settings, store, alerts)
        live = LiveHub(
            lambda device_id: {c["id"]: c["name"] for c in store.registry.list_channels(device_id)}
        )
        pipeline.add_listener(live.on_batch)
        alerts.engine.add_listener(live.on_alert)
        return cls(
            settings=settings,
            reports=reports,
            report_scheduler=report_scheduler,
            store=store,
            registry=registry,
            queries=QueryService(store, store.registry),
            pipeline=pipeline,
            stats=stats,
            live=live,
            maintenance=Maintenance(
                store,
                retention_raw_days=settings.retention_raw_days,
                backup_dir=settings.backup_dir,
                backup_interval_s=settings.backup_interval_s,
                backup_keep=settings.backup_keep,
            ),
            alerts=alerts,
            hooks=hooks,
            webhooks=webhooks,
            ai=ai,
            ai_scheduler=ai_scheduler,
        )

    async def start(self) -> None:
        self.live.open()
        if self.hooks is not None and self.alerts is not None:
            await self.hooks.start()
            await self.alerts.engine.start()
        await self.pipeline.start()
        if self.mqtt is not None:
            await self.mqtt.start()
        if self.report_scheduler is not None:
            self.report_scheduler.start()
        if self.maintenance is not None:
            self.maintenance.start()
        if self.ai_scheduler is not None:
            self.ai_scheduler.start()
        if self.control is not None and self.schedules is not None:
            await asyncio.to_thread(self.control.abandon_stale)
            if self.revoker is not None:
                self.revoker.attach(asyncio.get_running_loop())
            self.schedules.start()

    async def stop(self) -> None:
        if self.schedules is not None:
            await self.schedules.stop()
        if self.revoker is not None:
            self.revoker.attach(None)
        self.live.close()
        if self.report_scheduler is not None:
            await self.report_scheduler.stop()
        if self.maintenance is not None:
            await self.maintenance.stop()
        if self.ai_scheduler is not None:
            await self.ai_scheduler.stop()
        if self.mqtt is not None:
            await self.mqtt.stop()  # messages already read are committed before the pipeline ends
        await self.pipeline.stop()
        if self.hooks is not None and self.alerts is not None:
            await self.alerts.engine.stop()
            await self.hooks.stop()

    def enable_mqtt(self, *, consume: bool = True, client_id: str | None = None) -> MqttService:
        """Attach MQTT as the settings say (embedded broker, or ``broker_url``); it starts and
        stops with the app. ``consume=False``: publish/request only (external broker)."""
        from wattwatch.ingest.mqtt import MqttService

        self.mqtt = MqttService.from_settings(
            self.settings,
            self.pipeline,
            self.store.registry,
            self.stats,
            client_id=client_id,
            consume=consume,
            on_presence=self.device_status,
            limits=self.limits,
        )
        if self.hooks is not None:  # alert rules can notify to an MQTT topic through it
            self.hooks.context.publish = self.mqtt.publish
        return self.mqtt

    def device_status(self, device_id: int, org_id: int, online: bool, ts_ms: int) -> None:
        """A device came online or went offline (presence, last will, status message): tells
        offline alert rules and hooks. Safe to call from any thread; never waits."""
        if self.alerts is not None:
            self.alerts.engine.device_status(device_id, online, ts_ms)
        if self.hooks is not None:
            self.hooks.device_status(device_id, org_id, online, ts_ms)
        self.live.publish(
            "device.status",
            org_id,
            {"device_id": device_id, "online": online, "ts": ts_ms},
            device_id=device_id,
        )

    def close(self) -> None:
        self.store.close()


def build_reports(settings: Settings, store: SqlStore) -> tuple[ReportService, ReportScheduler]:
    """Period reports, and the scheduler that mails them (SMTP shared with alert emails)."""
    report_store = SqlReportStore(store.engine, store.read_engine)
    service = ReportService(store, store.registry, report_store)
    mailer = ReportMailer(smtp_of(settings, SmtpSettings))
    link_base = f"http://{settings.http_host}:{settings.http_port}"
    scheduler = ReportScheduler(service, report_store, mailer, link_base=link_base)
    return service, scheduler


def build_ai(
    settings: Settings, store: SqlStore, alerts: AlertService
) -> tuple[AiService, AiScheduler]:
    """The AI service, and its background task: retraining and anomaly checks that raise
    alerts through the ``anomaly`` rule kind."""
    service = AiService(
        store,
        store.registry,
        SqlAiStore(store.engine, store.read_engine),
        keep_models=settings.ai_models_keep,
        train_days=settings.ai_train_days,
    )
    scheduler = AiScheduler(
        service,
        retrain_interval_s=settings.ai_retrain_interval_s,
        anomaly_interval_s=settings.ai_anomaly_interval_s,
        anomaly_rules=alerts.store.enabled_rules,
        raise_anomaly=alerts.engine.raise_anomaly,
    )
    return service, scheduler


def build_alerts_and_hooks(
    settings: Settings, store: SqlStore, pipeline: IngestPipeline
) -> tuple[AlertService, HookDispatcher, WebhookService]:
    """The alert engine and the hook dispatcher, listening to committed batches."""
    alert_store = SqlAlertStore(store.engine, store.read_engine)
    engine = AlertEngine(alert_store, store.registry, store)
    hooks = HookDispatcher(
        make_plugin_manager(entry_points=settings.plugins_enabled),
        alert_store,
        store.registry,
        data_dir=settings.data_dir,
        retry=RetryPolicy(
            settings.delivery_attempts,
            settings.delivery_first_delay_s,
            settings.delivery_backoff_factor,
            settings.delivery_max_delay_s,
            settings.delivery_timeout_s,
        ),
        smtp=smtp_of(settings, SmtpConfig),
    )
    engine.add_listener(hooks.on_alert)
    pipeline.add_listener(engine.on_batch)
    pipeline.add_listener(hooks.on_batch)
    alerts = AlertService(alert_store, store.registry, engine, lambda: hooks.notifiers)
    return alerts, hooks, WebhookService(alert_store, hooks)


def build_control(ww: Wattwatch) -> tuple[ControlService, ControlScheduler, SessionRevoker]:
    """Commands go out through whichever MQTT ``ww`` has (``enable_mqtt``); results reach
    the live stream and the hooks; a changed device token ends its live MQTT sessions."""
    store = SqlControlStore(ww.store.engine, ww.store.read_engine)

    def transport() -> Any:
        return getattr(ww, "mqtt", None)

    control = ControlService(ww.registry, store, transport)

    def to_live(device_id: int, org_id: int, result: dict[str, Any], ts_ms: int) -> None:
        ww.live.publish(
            "command.result",
            org_id,
            {"ts": ts_ms, "device_id": device_id, "result": result},
            device_id=device_id,
        )

    control.add_listener(to_live)
    if ww.hooks is not None:
        control.add_listener(ww.hooks.command_result)
    revoker = SessionRevoker(transport)
    ww.registry.on_device_credentials(revoker)
    return control, ControlScheduler(control, store), revoker
