"""Dagster resources. Unset fields fall back to Pulse settings read at use time (never at
import): ``PULSE_DATABASE_URL`` (unset → the embedded PostgreSQL via ``pulse.db.database_url``)
and ``PULSE_LAKE_DIR`` (unset → ``PULSE_HOME/lake``). Deployments can pin them instead, e.g.
``PulseDatabase(url=dg.EnvVar("ANALYTICS_DATABASE_URL"))``."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import dagster as dg


class PulseDatabase(dg.ConfigurableResource):
    """The hot store (PostgreSQL/TimescaleDB)."""

    url: str | None = None

    def get_url(self) -> str:
        from pulse.db import database_url

        return self.url or database_url()

    @contextmanager
    def connect(self):
        from pulse.db import connect

        conn = connect(self.get_url())
        try:
            yield conn
        finally:
            conn.close()


class PulseLake(dg.ConfigurableResource):
    """The Parquet lake directory."""

    lake_dir: str | None = None

    def path(self) -> Path:
        from pulse.settings import get_settings

        return Path(self.lake_dir) if self.lake_dir else get_settings().lake_path


class AnalyticsSettings(dg.ConfigurableResource):
    """Tunables of the analytics assets."""

    hot_window_days: float = 7.0  # retention keeps this much telemetry in the hot store
    offline_multiplier: float = 3.0  # offline after this × the median reporting interval …
    offline_thresholds_s: dict[str, float] = {}  # … unless the device type has a fixed threshold
    max_late_runs_per_tick: int = 48


def default_resources() -> dict:
    return {"db": PulseDatabase(), "lake": PulseLake(), "analytics": AnalyticsSettings()}
