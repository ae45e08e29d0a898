"""Alert analytics: noisiest rules, alerts per device/site, alerts auto-resolved within N
minutes, pages per responder and per on-call shift, flapping share.

Pure ``alert_analytics(alerts, events, ...)`` over frames; ``alert_analytics_partition``
loads one UTC day from the hot store and writes the tables to the lake for the app:

    <lake>/alert_analytics/<table>/tenant=<t>/date=<YYYY-MM-DD>/day.parquet

Definitions (alerts whose ``started_at`` falls in the day; shadow alerts excluded):
- fired: the alert reached ``firing`` (see ``assets.sla.alert_timings``).
- auto-resolved: fired, resolved within N minutes of firing, by the engine (no human
  resolver) and never acknowledged — the "noise that cleared itself" measure.
- flapping: the alert entered ``flapping`` at least once.
- page: an ``alert_events`` row with ``notify`` set and not silenced (what the outbox sends).
  Its responder is whoever acknowledged the alert (``alerts.acknowledged_by``, else the actor
  of the first ack event), ``(unacknowledged)`` otherwise.
- shift: with on-call schedules applied, a page counts towards every schedule's shift
  covering its time (routing is not replayed here: a page is attributed to each rotation
  that was on call); without schedules the shift is the UTC day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import polars as pl

from assets.sla import _ALERT_SCHEMA, TS, alert_timings

TABLES = ("rules", "devices", "sites", "responders", "shifts", "summary")
UNACKED = "(unacknowledged)"
NO_SCHEDULE = "(per day)"
ALERTS_SCHEMA = {"tenant_id": pl.String, **_ALERT_SCHEMA, "count": pl.Int64}
EVENTS_SCHEMA = {"alert_id": pl.String, "at": TS, "from_state": pl.String, "to_state": pl.String,
                 "action": pl.String, "actor": pl.String, "notify": pl.Boolean, "silenced": pl.Boolean}


def alert_analytics(alerts: pl.DataFrame, events: pl.DataFrame, *, start: datetime, end: datetime,
                    auto_resolve_minutes: float = 5.0, schedules: Sequence = ()) -> dict[str, pl.DataFrame]:
    """All tables for alerts started in [start, end). ``alerts``: ALERTS_SCHEMA columns;
    ``events``: EVENTS_SCHEMA columns (every event of those alerts, any time)."""
    a = alerts.filter((pl.col("started_at") >= start) & (pl.col("started_at") < end))
    ev = events.join(a.select("alert_id", "tenant_id"), on="alert_id")
    t = alert_timings(a.drop("tenant_id", "count"), ev.drop("tenant_id"))
    flapped = ev.filter(pl.col("to_state") == "flapping").select("alert_id").unique().with_columns(
        pl.lit(True).alias("flapped"))
    per = (a.select("alert_id", "tenant_id", "rule_id", "device_id", pl.col("site_id").fill_null("(no site)"),
                    "severity", pl.col("count").fill_null(1))
           .join(t.select("alert_id", "fired_at", "acked_at", "responder", "resolver", "ttr_s"), on="alert_id", how="left")
           .join(flapped, on="alert_id", how="left")
           .with_columns(pl.col("fired_at").is_not_null().alias("fired"), pl.col("flapped").fill_null(False),
                         (pl.col("ttr_s").is_not_null() & (pl.col("ttr_s") <= auto_resolve_minutes * 60)
                          & pl.col("acked_at").is_null()
                          & (pl.col("resolver").is_null() | (pl.col("resolver") == "engine"))).alias("auto_resolved")))
    pages = (ev.filter(pl.col("notify") & ~pl.col("silenced").fill_null(False))
             .join(per.select("alert_id", "rule_id", "device_id", "site_id", "responder"), on="alert_id")
             .with_columns(pl.col("responder").fill_null(UNACKED)))
    page_counts = pages.group_by("alert_id").agg(pl.len().alias("pages"))
    per = per.join(page_counts, on="alert_id", how="left").with_columns(pl.col("pages").fill_null(0).cast(pl.Int64))

    def counts(keys: list[str], *extra: pl.Expr) -> pl.DataFrame:
        return (per.group_by(keys).agg(*extra,
                    pl.len().alias("alerts"), pl.col("fired").sum().alias("fired"),
                    pl.col("count").sum().alias("occurrences"), pl.col("pages").sum().alias("pages"),
                    pl.col("auto_resolved").sum().alias("auto_resolved"), pl.col("flapped").sum().alias("flapping"))
                .with_columns((pl.col("alerts") / pl.col("alerts").sum().over("tenant_id")).round(6).alias("share"))
                .sort(["tenant_id", "alerts", *keys[1:]], descending=[False, True] + [False] * (len(keys) - 1)))

    rules = counts(["tenant_id", "rule_id"])
    # a device's alerts may carry different sites over time (moved device): keep the latest
    devices = counts(["tenant_id", "device_id"], pl.col("site_id").sort_by("fired_at").last()).filter(pl.col("device_id").is_not_null())
    sites = counts(["tenant_id", "site_id"])
    acked = per.filter(pl.col("acked_at").is_not_null()).with_columns(
        ((pl.col("acked_at") - pl.col("fired_at")).dt.total_microseconds() / 1e6).alias("tta_s"))
    responders = (pages.group_by("tenant_id", "responder").agg(pl.len().alias("pages"),
                                                              pl.col("alert_id").n_unique().alias("alerts"))
                  .join(acked.group_by("tenant_id", "responder").agg(pl.len().alias("acknowledged"),
                                                                     pl.col("tta_s").mean().alias("mtta_s")),
                        on=["tenant_id", "responder"], how="left")
                  .with_columns(pl.col("acknowledged").fill_null(0).cast(pl.Int64))
                  .sort(["tenant_id", "pages", "responder"], descending=[False, True, False]))
    shifts = _pages_per_shift(pages, schedules, start, end)
    summary = (per.group_by("tenant_id").agg(
                    pl.len().alias("alerts"), pl.col("fired").sum().alias("fired"), pl.col("pages").sum().alias("pages"),
                    pl.col("auto_resolved").sum().alias("auto_resolved"), pl.col("flapped").sum().alias("flapping"))
               .with_columns((pl.col("auto_resolved") / pl.col("fired")).fill_nan(None).round(6).alias("auto_resolved_share"),
                             (pl.col("flapping") / pl.col("fired")).fill_nan(None).round(6).alias("flapping_share"),
                             pl.lit(float(auto_resolve_minutes)).alias("auto_resolve_minutes"),
                             pl.lit(start).cast(TS).alias("start"), pl.lit(end).cast(TS).alias("end"))
               .sort("tenant_id"))
    return {"rules": rules, "devices": devices, "sites": sites, "responders": responders, "shifts": shifts,
            "summary": summary}


def _pages_per_shift(pages: pl.DataFrame, schedules: Sequence, start: datetime, end: datetime) -> pl.DataFrame:
    schema = {"tenant_id": pl.String, "schedule_id": pl.String, "on_call": pl.String, "shift_start": TS,
              "shift_end": TS, "pages": pl.Int64, "acknowledged_by_on_call": pl.Int64}
    rows = []
    page_rows = pages.select("tenant_id", "at", "responder").rows()
    if schedules:
        from alerting.oncall import shifts as resolve_shifts

        for sched in schedules:
            for sh in resolve_shifts(sched, start, end):
                for tenant in sorted({p[0] for p in page_rows}):
                    inside = [p for p in page_rows if p[0] == tenant and sh.start <= p[1] < sh.end]
                    if inside:
                        rows.append((tenant, sched.id, sh.user, sh.start, sh.end, len(inside),
                                     sum(1 for p in inside if p[2] == sh.user)))
    else:
        for tenant in sorted({p[0] for p in page_rows}):
            inside = [p for p in page_rows if p[0] == tenant]
            rows.append((tenant, NO_SCHEDULE, None, start, end, len(inside), 0))
    return pl.DataFrame(rows, schema=schema, orient="row").sort("tenant_id", "schedule_id", "shift_start")


# ------------------------------------------------------------------ hot store → lake


def load_alert_frames(conn, start: datetime, end: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = conn.execute(
        """select tenant_id, alert_id, rule_id, device_id, site_id, severity, state, started_at, acknowledged_at,
                  acknowledged_by, resolved_at, resolved_by, count
           from alerts where not shadow and started_at >= %s and started_at < %s""", (start, end)).fetchall()
    alerts = pl.DataFrame(rows, schema=ALERTS_SCHEMA, orient="row")
    ev = conn.execute(
        """select e.alert_id, e.at, e.from_state, e.to_state, e.action, e.actor, e.notify, e.silenced
           from alert_events e join alerts a using (alert_id)
           where not a.shadow and a.started_at >= %s and a.started_at < %s order by e.event_id""",
        (start, end)).fetchall()
    conn.commit()
    return alerts, pl.DataFrame(ev, schema=EVENTS_SCHEMA, orient="row")


def load_schedules(conn) -> list:
    from alerting.config import load_objects
    from alerting.oncall import Schedule

    defs = load_objects(conn, "schedule")
    conn.commit()
    return [Schedule.model_validate(d) for d in defs]


def table_path(lake_dir: Path, table: str, tenant: str, day: datetime) -> Path:
    return Path(lake_dir) / "alert_analytics" / table / f"tenant={tenant}" / f"date={day:%Y-%m-%d}" / "day.parquet"


def alert_analytics_partition(conn, lake_dir: Path, start: datetime, end: datetime, *,
                              auto_resolve_minutes: float = 5.0) -> dict[str, int]:
    """Compute one UTC day and write every table per tenant (atomically, replacing the day;
    tenants that no longer have alerts that day lose their stale files). Returns rows per table."""
    from assets.lake import write_parquet_atomic

    alerts, events = load_alert_frames(conn, start, end)
    tables = alert_analytics(alerts, events, start=start, end=end, auto_resolve_minutes=auto_resolve_minutes,
                             schedules=load_schedules(conn))
    tenants = set(alerts["tenant_id"].to_list())
    out = {}
    for name, df in tables.items():
        for tenant in tenants:
            write_parquet_atomic(df.filter(pl.col("tenant_id") == tenant).to_arrow(),
                                 table_path(lake_dir, name, tenant, start))
        for stale in (Path(lake_dir) / "alert_analytics" / name).glob(f"tenant=*/date={start:%Y-%m-%d}/day.parquet"):
            if stale.parent.parent.name.removeprefix("tenant=") not in tenants:
                stale.unlink()
        out[name] = df.height
    return out


def read_alert_analytics(lake_dir: Path, table: str, tenant: str | None = None) -> pl.DataFrame:
    """For the app: one table over every day written (optionally one tenant)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
    pattern = f"tenant={tenant or '*'}/date=*/day.parquet"
    files = sorted((Path(lake_dir) / "alert_analytics" / table).glob(pattern))
    return pl.read_parquet(files) if files else pl.DataFrame()
