"""Settings from environment variables (prefix ``PULSE_``), read when used, never at import."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_nab_dir() -> Path | None:
    # The shared checkout layout puts the NAB corpus beside the project: ../shared/datasets/nab
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidate = base.parent / "shared" / "datasets" / "nab"
        if (candidate / "data").is_dir():
            return candidate
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PULSE_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset → embedded PostgreSQL under PULSE_HOME"
    )
    mqtt_url: str | None = Field(default=None, description="mqtt://host:port; unset → MQTT ingest off")
    home: Path = Field(default=Path(".pulse"), description="state directory (embedded db, logs)")
    lake_dir: Path | None = Field(default=None, description="Parquet lake; default PULSE_HOME/lake")
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    dagster_port: int = Field(default=3000, description="Dagster UI (dagster-webserver) port for `pulse up`")
    app_port: int = Field(default=8501, description="Streamlit app port for `pulse up`")
    stop_timeout_s: float = Field(
        default=15.0, description="`pulse down`: seconds a service gets after SIGTERM before SIGKILL"
    )
    nab_dir: Path | None = Field(default_factory=_default_nab_dir)

    # ingest tuning
    batch_max_rows: int = 20_000
    batch_linger_ms: int = 50
    queue_max_rows: int = 200_000
    max_clock_skew_s: float = 300.0
    http_max_body_bytes: int = 8 * 1024 * 1024
    mqtt_client_id: str = "pulse-ingest"
    mqtt_share_group: str = "pulse-ingest"
    mqtt_session_expiry_s: int = Field(
        default=7 * 24 * 3600, description="how long the broker keeps a stopped worker's backlog"
    )
    mqtt_receive_process: bool = Field(
        default=True, description="run paho's receive loop in a child process (ingest/receiver.py); false: a "
                                  "thread of the ingest process"
    )
    shards: int | None = Field(
        default=None, description="sharded ingest (docs/scaling.md): number of virtual shards, fixed for a "
                                  "deployment (e.g. 64); unset → one shared subscription, no sharding"
    )
    mqtt_shard_root: str = Field(default="pulse/v1s", description="topic root of the per-shard telemetry topics")

    @property
    def lake_path(self) -> Path:
        return self.lake_dir if self.lake_dir is not None else self.home / "lake"


def get_settings() -> Settings:
    """Fresh settings from the current environment (cheap; call where needed)."""
    return Settings()


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` → (host, port)."""
    from pulse.errors import UserError

    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise UserError(f"PULSE_MQTT_URL {url!r} must look like mqtt://host:port")
    return parsed.hostname, parsed.port or 1883
