"""Settings: the only place environment variables (WATTWATCH_*) are read."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
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
    # Ingest: how many readings may wait for the store before senders are slowed down.
    ingest_queue_readings: int = Field(200_000, ge=1000)
    ingest_batch_readings: int = Field(20_000, ge=1)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
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

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("database_url must start with sqlite: or postgresql:")
        return value

    def store_url(self) -> str:
        """The database URL actually used: explicit, or the SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'wattwatch.db').resolve()}"
