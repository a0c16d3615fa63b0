"""Settings: the only place environment variables (WATTWATCH_*) are read."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """wattwatch settings. Each field can be set as ``WATTWATCH_<FIELD>`` or by a CLI flag."""

    model_config = SettingsConfigDict(env_prefix="WATTWATCH_", extra="ignore")

    data_dir: Path = Field(Path("wattwatch-data"), description="where the SQLite store lives")
    database_url: str | None = Field(
        None, description="sqlite:///path or postgresql://… (overrides data_dir for the store)"
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(1883, ge=0, le=65535)
    mqtt_enabled: bool = True
    broker_url: str | None = Field(None, description="external broker, mqtt://user:pass@host:port")
    # MQTT (docs/broker.md, docs/scale-out.md). The service account is for integrations
    # and bridges on the embedded broker; no password, no service account.
    mqtt_service_user: str = Field("wattwatch", min_length=1, max_length=64)
    mqtt_service_password: SecretStr | None = None
    mqtt_connect_timeout_s: float = Field(10.0, gt=0, le=300)
    mqtt_max_packet_bytes: int = Field(1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    mqtt_max_connections: int = Field(10_000, ge=1)
    mqtt_max_connections_per_ip: int = Field(0, ge=0, description="0: no limit")
    mqtt_max_connections_per_device: int = Field(4, ge=1)
    mqtt_max_inflight: int = Field(64, ge=1, le=65535)
    mqtt_session_expiry_s: int = Field(24 * 3600, ge=0)
    mqtt_last_seen_interval_s: float = Field(60.0, ge=0)
    # External broker: the shared-subscription group, and this process's (stable) client id.
    mqtt_share_group: str = Field("wattwatch", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    mqtt_client_id: str | None = Field(None, max_length=64)
    # Unacknowledged messages an external broker may send a worker (they are committed in
    # one group commit; more in flight = bigger batches).
    mqtt_receive_maximum: int = Field(1000, ge=1, le=65535)
    # serve --broker-url consumes like a worker; false for API replicas that only send commands.
    mqtt_consume: bool = True
    # Ingest: how many readings may wait for the store before senders are slowed down.
    ingest_queue_readings: int = Field(200_000, ge=1000)
    ingest_batch_readings: int = Field(20_000, ge=1)
    # Processes that decode and check large JSON uploads beside the server's own (0: none,
    # all in-process). The server process is bound by its one interpreter: one decoder
    # process takes a fifth of its work per uploaded reading (+5-10 % readings/s on 2 cores).
    decode_processes: int = Field(0, ge=0, le=64)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    # Abuse and limits (docs/reliability.md). Per device, over HTTP, ThingsBoard HTTP and the
    # embedded broker: readings per second on average and at once (0 readings/s: no limit).
    # 5,000/s is 80 × what a 64-channel panel reporting every second sends; the burst lets a
    # day of 1 s backlog (86,400 readings) through in one upload.
    device_rate_readings_per_s: float = Field(5000.0, ge=0)
    device_burst_readings: int = Field(200_000, ge=1)
    # HTTP server: connections beyond the cap are closed at once (established ones keep
    # working); request headers must be complete within the header timeout (slowloris) and
    # a request body within the body timeout; bodies of routes other than uploads are small.
    http_max_connections: int = Field(1000, ge=1)
    http_max_connections_per_ip: int = Field(0, ge=0, description="0: no limit")
    http_keep_alive_s: int = Field(5, ge=1, le=3600)
    http_header_timeout_s: float = Field(10.0, gt=0, le=3600)
    http_body_timeout_s: float = Field(120.0, gt=0, le=24 * 3600)
    http_max_api_body_bytes: int = Field(1024 * 1024, ge=1024)
    login_token_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    log_level: str = "info"
    # Durability (docs/reliability.md): raw readings older than this many days are dropped,
    # rollups are kept (None: keep everything); scheduled backups while serving.
    retention_raw_days: int | None = Field(None, ge=1)
    backup_dir: Path | None = Field(None, description="scheduled backups go here (None: off)")
    backup_interval_s: int = Field(24 * 3600, ge=60)
    backup_keep: int = Field(7, ge=1, description="newest scheduled backups kept")

    # Alerts and hooks (docs/hooks.md): email notifications need an SMTP server; webhook,
    # email and MQTT deliveries are retried on a backoff schedule, then dead-lettered.
    smtp_host: str | None = Field(None, description="SMTP server for alert emails (None: off)")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "wattwatch@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    delivery_attempts: int = Field(6, ge=1, le=20, description="tries per delivery in all")
    delivery_first_delay_s: float = Field(2.0, ge=0, description="wait before the 2nd try")
    delivery_backoff_factor: float = Field(4.0, ge=1)
    delivery_max_delay_s: float = Field(600.0, ge=0)
    delivery_timeout_s: float = Field(10.0, gt=0)
    plugins_enabled: bool = Field(True, description="load plugins of the 'wattwatch' entry points")

    # AI (docs/ai.md, model lifecycle): scheduled retraining and anomaly checks while
    # serving (0: off; both off without the [ml] extra); models kept per device and kind.
    ai_retrain_interval_s: int = Field(7 * 24 * 3600, ge=0)
    ai_anomaly_interval_s: int = Field(3600, ge=0)
    ai_models_keep: int = Field(5, ge=1, le=100)
    ai_train_days: int = Field(14, ge=1, le=120)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("database_url must start with sqlite: or postgresql:")
        return value

    @field_validator("mqtt_service_password")
    @classmethod
    def _strong_service_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("mqtt_service_password must have at least 16 characters")
        return value

    def store_url(self) -> str:
        """The database URL actually used: explicit, or the SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'wattwatch.db').resolve()}"
