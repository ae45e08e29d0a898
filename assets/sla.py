"""SLA reports: availability, downtime incidents, alert MTTA/MTTR and data completeness for one
tenant over a daily or monthly period in the tenant's own time zone.

Pure functions over frames (``sla_report_from_frames``) plus thin loaders (hot store / lake)
and writers (CSV, JSON, self-contained HTML). Used by the Dagster assets
(``assets/defs_sla.py``), the CLI (``pulse report sla``) and delivery (``assets/sla_delivery.py``).

Availability follows ``assets.health.device_health`` (offline = no reading for longer than
the device's threshold), computed on integer device codes (``assets.health.offline_intervals``). One refinement: a reading vouches for the device for one reporting
interval, so a downtime incident starts one interval after the last reading before the gap,
not at that reading. With that, measured downtime of an outage differs from the true outage by
less than one reporting interval (tested against the simulator's injected offline faults).
Every active device counts for the whole period (a device with no reading at all is down for
the whole period); availability of a site/tenant = 1 - Σ downtime / Σ period length.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assets.health import code_device_ids, decode_device_ids, offline_intervals
from pulse.errors import UserError

DEFAULT_TARGET_PCT = 99.5
FORMATS = ("csv", "json", "html")
LOOKBACK = timedelta(hours=1)  # readings before the period, so an outage at its start is seen
NO_SITE = "(no site)"
TS = pl.Datetime("us", "UTC")


# ------------------------------------------------------------------ settings (per tenant)


class EmailSubscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(description="id of an applied `email` channel (SMTP server, sender)")
    recipients: list[str] = Field(default_factory=list, description="overrides the channel's `to` when given")

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if "@" not in a or any(c in a for c in "\r\n,;")]
        if bad:
            raise ValueError(f"not an email address: {', '.join(bad)}")
        return v


class WebhookSubscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(description="id of an applied `webhook` channel (URL, signing keys)")
    link_base: str | None = Field(default=None, description="URL prefix under which the report folder is served")


class ReportSettings(BaseModel):
    """Per-tenant SLA report settings (table ``report_settings``)."""

    model_config = ConfigDict(extra="forbid")

    target_pct: float = Field(default=DEFAULT_TARGET_PCT, gt=0, le=100)
    formats: list[Literal["csv", "json", "html"]] = Field(default_factory=lambda: list(FORMATS), min_length=1)
    folder: str | None = Field(default=None, description="local directory (or file:// URL); reports always land here")
    email: EmailSubscription | None = None
    webhook: WebhookSubscription | None = None
    daily: bool = True
    monthly: bool = True

    @field_validator("folder")
    @classmethod
    def _local(cls, v: str | None) -> str | None:
        # Object stores are reached through a mounted path (s3fs/gcsfuse): one code path, atomic renames.
        if v is not None and "://" in v and not v.startswith("file://"):
            raise ValueError("only local paths or file:// URLs; mount an object store to use it")
        return v

    def folder_path(self) -> Path | None:
        if self.folder is None:
            return None
        return Path(self.folder.removeprefix("file://"))


def load_report_settings(conn, tenant: str) -> ReportSettings:
    row = conn.execute("select settings from report_settings where tenant_id = %s", (tenant,)).fetchone()
    conn.commit()
    try:
        return ReportSettings.model_validate(row[0] if row else {})
    except ValidationError as exc:
        raise UserError(f"report settings of tenant {tenant!r} are invalid: {exc}") from None


def save_report_settings(conn, tenant: str, settings: ReportSettings | dict) -> ReportSettings:
    from psycopg.types.json import Jsonb

    model = settings if isinstance(settings, ReportSettings) else ReportSettings.model_validate(settings)
    with conn.transaction():
        conn.execute(
            """insert into report_settings (tenant_id, settings) values (%s, %s)
               on conflict (tenant_id) do update set settings = excluded.settings, updated_at = now()""",
            (tenant, Jsonb(model.model_dump(exclude_none=True))))
    return model


# ------------------------------------------------------------------ periods


@dataclass(frozen=True)
class Period:
    kind: Literal["daily", "monthly"]
    label: str           # 2026-11 or 2026-11-05, in the tenant's zone
    time_zone: str
    start: datetime      # UTC instants of local midnight(s); a DST day is 23 or 25 h long
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def buckets(self) -> list[tuple[str, datetime, datetime]]:
        """Chart buckets: local hours of a day, local days of a month (DST-correct)."""
        zone = ZoneInfo(self.time_zone)
        out = []
        if self.kind == "monthly":
            d = self.start.astimezone(zone).date()
            while True:
                a, b = _local_midnight(d, zone), _local_midnight(d + timedelta(days=1), zone)
                if a >= self.end:
                    break
                out.append((d.isoformat(), a, b))
                d += timedelta(days=1)
        else:
            t = self.start
            while t < self.end:
                out.append((t.astimezone(zone).strftime("%H:%M"), t, min(t + timedelta(hours=1), self.end)))
                t += timedelta(hours=1)  # UTC hours: a 25 h local day shows 25 buckets
        return out


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"unknown time zone {name!r}") from None


def _local_midnight(d: date, zone: ZoneInfo) -> datetime:
    # Midnight exists in every zone used today except on a few historic DST switches; fold=0
    # takes the first occurrence / shifts forward across a gap.
    return datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)


def parse_period(text: str, time_zone: str = "UTC") -> Period:
    """``2026-11`` → that month, ``2026-11-05`` → that day, both in ``time_zone``."""
    zone = _zone(time_zone)
    text = (text or "").strip()
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
        y, mo = int(m[1]), int(m[2])
        if not 1 <= mo <= 12:
            raise UserError(f"invalid month in period {text!r}")
        first = date(y, mo, 1)
        nxt = date(y + (mo == 12), mo % 12 + 1, 1)
        return Period("monthly", text, time_zone, _local_midnight(first, zone), _local_midnight(nxt, zone))
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            d = date.fromisoformat(text)
        except ValueError:
            raise UserError(f"invalid date in period {text!r}") from None
        return Period("daily", text, time_zone, _local_midnight(d, zone), _local_midnight(d + timedelta(days=1), zone))
    raise UserError(f"period must be YYYY-MM (monthly) or YYYY-MM-DD (daily), got {text!r}")


def previous_period(kind: str, now: datetime, time_zone: str) -> str:
    """Label of the last complete period at ``now`` in ``time_zone`` (yesterday / last month)."""
    local = now.astimezone(_zone(time_zone)).date()
    if kind == "daily":
        return (local - timedelta(days=1)).isoformat()
    last = local.replace(day=1) - timedelta(days=1)
    return f"{last:%Y-%m}"


def tenant_zone(conn, tenant: str) -> str:
    row = conn.execute("select time_zone from tenants where tenant_id = %s", (tenant,)).fetchone()
    conn.commit()
    if row is None:
        raise UserError(f"unknown tenant {tenant!r}")
    return row[0] or "UTC"


# ------------------------------------------------------------------ availability (pure)


@dataclass(frozen=True)
class Availability:
    devices: pl.DataFrame    # device_id, site_id, device_type, period_s, downtime_s, availability_pct, incidents,
                             # received, expected, completeness_pct, interval_s, meets_target
    sites: pl.DataFrame      # site_id, devices, period_s, downtime_s, availability_pct, completeness_pct, meets_target
    incidents: pl.DataFrame  # device_id, site_id, start, end, duration_s, began_before, ongoing
    timeline: pl.DataFrame   # bucket, start, end, availability_pct
    tenant: dict


def availability(readings: pl.DataFrame, devices: pl.DataFrame, period: Period, *, target_pct: float,
                 until: datetime | None = None, lookback: timedelta = LOOKBACK, **health_options) -> Availability:
    """Availability of one tenant's ``devices`` (device_id, site_id, device_type) over ``period``
    from ``readings`` (device_id, time; may start ``lookback`` before the period).
    ``until`` cuts an unfinished period short (the report is then partial)."""
    start = period.start
    end = min(period.end, until) if until else period.end
    end = max(end, start)
    span = (end - start).total_seconds()
    # Device ids become integer codes (their rank in the sorted id list, so code order is id
    # order) for the per-reading work: a month of 10k devices is ~10^8 reading times; on string
    # ids that took minutes and >15 GB (measured), on codes seconds. Ids come back at the end.
    readings, devices, names = code_device_ids(readings, devices)
    w0 = start - lookback
    health = offline_intervals(readings, devices, w0, end, **health_options) if span > 0 else None

    dev_info = devices.select("device_id", pl.col("site_id").fill_null(NO_SITE), pl.col("device_type").fill_null(""))
    inc_schema = {"device_id": pl.UInt32, "start": TS, "end": TS, "duration_s": pl.Float64,
                  "began_before": pl.Boolean, "ongoing": pl.Boolean}
    if health is None:
        incidents = pl.DataFrame(schema=inc_schema)
        intervals = pl.DataFrame(schema={"device_id": pl.UInt32, "interval_s": pl.Float64})
    else:
        times, per_device, offline = health
        intervals = per_device.select("device_id", "interval_s")
        w0_ts = pl.lit(w0).cast(TS)
        off = (offline.join(intervals, on="device_id")
               # the reading that opens the gap covers its own interval; a head interval opens at w0
               .with_columns(pl.when(pl.col("start") > w0_ts)
                             .then(pl.col("start") + pl.duration(microseconds=(pl.col("interval_s") * 1e6).cast(pl.Int64)))
                             .otherwise(pl.col("start")).alias("down_from")))
        incidents = (off.with_columns(
                        pl.max_horizontal(pl.col("down_from"), pl.lit(start).cast(TS)).alias("s"),
                        pl.min_horizontal(pl.col("end"), pl.lit(end).cast(TS)).alias("e"))
                     .filter(pl.col("e") > pl.col("s"))
                     .select("device_id", pl.col("s").alias("start"), pl.col("e").alias("end"),
                             ((pl.col("e") - pl.col("s")).dt.total_microseconds() / 1e6).alias("duration_s"),
                             (pl.col("down_from") < pl.lit(start).cast(TS)).alias("began_before"),
                             (pl.col("end") >= pl.lit(end).cast(TS)).alias("ongoing")))
    incidents = incidents.join(dev_info.select("device_id", "site_id"), on="device_id", how="left").select(
        "device_id", pl.col("site_id").fill_null(NO_SITE), "start", "end", "duration_s", "began_before", "ongoing"
    ).sort("start", "device_id")

    # completeness over the period itself: distinct reading times / expected (period / interval)
    received = ((times if health else readings.unique()).filter((pl.col("time") >= start) & (pl.col("time") < end))
                .group_by("device_id").agg(pl.len().alias("received")))  # times: distinct already
    down = incidents.group_by("device_id").agg(pl.col("duration_s").sum().alias("downtime_s"),
                                               pl.len().alias("incidents"))
    per_dev = (dev_info.join(intervals, on="device_id", how="left").join(down, on="device_id", how="left")
               .join(received, on="device_id", how="left")
               .with_columns(pl.lit(span).alias("period_s"), pl.col("downtime_s").fill_null(0.0),
                             pl.col("incidents").fill_null(0).cast(pl.Int64),
                             pl.col("received").fill_null(0).cast(pl.Int64),
                             pl.col("interval_s").fill_null(60.0))
               .with_columns((pl.col("period_s") / pl.col("interval_s")).alias("expected"))
               .with_columns(_pct(1 - pl.col("downtime_s") / pl.col("period_s")).alias("availability_pct"),
                             _pct((pl.col("received") / pl.col("expected")).clip(upper_bound=1.0)).alias("completeness_pct"))
               .with_columns((pl.col("availability_pct") >= target_pct).alias("meets_target"))
               .select("device_id", "site_id", "device_type", "period_s", "downtime_s", "availability_pct", "incidents",
                       "received", "expected", "completeness_pct", "interval_s", "meets_target")
               .sort("device_id"))
    per_dev, incidents = decode_device_ids(per_dev, names), decode_device_ids(incidents, names)
    sites = (per_dev.group_by("site_id").agg(
                pl.len().alias("devices"), pl.col("period_s").sum(), pl.col("downtime_s").sum(),
                pl.col("received").sum(), pl.col("expected").sum(), pl.col("incidents").sum())
             .with_columns(_pct(1 - pl.col("downtime_s") / pl.col("period_s")).alias("availability_pct"),
                           _pct((pl.col("received") / pl.col("expected")).clip(upper_bound=1.0)).alias("completeness_pct"))
             .with_columns((pl.col("availability_pct") >= target_pct).alias("meets_target"))
             .select("site_id", "devices", "period_s", "downtime_s", "availability_pct", "incidents", "completeness_pct",
                     "meets_target").sort("site_id"))
    tot_period = float(per_dev["period_s"].sum() or 0.0)
    tot_down = float(per_dev["downtime_s"].sum() or 0.0)
    tot_exp = float(per_dev["expected"].sum() or 0.0)
    tenant_pct = round(100.0 * (1 - tot_down / tot_period), 4) if tot_period else None
    summary = {
        "devices": per_dev.height, "sites": sites.height, "period_s": span,
        "availability_pct": tenant_pct, "target_pct": target_pct,
        "meets_target": tenant_pct is not None and tenant_pct >= target_pct,
        "devices_below_target": int((~per_dev["meets_target"]).sum()) if per_dev.height else 0,
        "incidents": incidents.height, "downtime_s": round(tot_down, 3),
        "completeness_pct": round(100.0 * min(1.0, float(per_dev["received"].sum()) / tot_exp), 4) if tot_exp else None,
    }
    return Availability(per_dev, sites, incidents, _timeline(incidents, per_dev.height, period, end), summary)


def _pct(expr: pl.Expr) -> pl.Expr:
    return (expr * 100).round(4)


def _timeline(incidents: pl.DataFrame, n_devices: int, period: Period, end: datetime) -> pl.DataFrame:
    rows = []
    spans = list(incidents.select("start", "end").iter_rows())
    for label, a, b in period.buckets():
        b = min(b, end)
        if b <= a:
            continue
        length = (b - a).total_seconds() * n_devices
        down = sum(max(0.0, (min(e, b) - max(s, a)).total_seconds()) for s, e in spans)
        rows.append((label, a, b, round(100.0 * (1 - down / length), 4) if length else None))
    return pl.DataFrame(rows, schema={"bucket": pl.String, "start": TS, "end": TS, "availability_pct": pl.Float64},
                        orient="row")


# ------------------------------------------------------------------ alert response times (pure)

_ALERT_SCHEMA = {"alert_id": pl.String, "rule_id": pl.String, "device_id": pl.String, "site_id": pl.String,
                 "severity": pl.String, "state": pl.String, "started_at": TS, "acknowledged_at": TS,
                 "acknowledged_by": pl.String, "resolved_at": TS, "resolved_by": pl.String}
_EVENT_SCHEMA = {"alert_id": pl.String, "at": TS, "from_state": pl.String, "to_state": pl.String,
                 "action": pl.String, "actor": pl.String, "notify": pl.Boolean}


def alert_timings(alerts: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """One row per alert that fired: fired_at, acked_at, resolved_at, tta_s, ttr_s, responder.

    fired_at = first transition to ``firing`` (the page); alerts with transition events but
    none to firing were never paged (pending → resolved) and are left out. Rows without any
    transition event (imported/hand-made) use ``started_at``. Ack = first ``ack`` action or
    transition to ``acknowledged`` after firing, else ``alerts.acknowledged_at``; resolve =
    first transition to ``resolved`` after firing, else ``alerts.resolved_at``.
    """
    ev = events.sort("at")
    fired = ev.filter((pl.col("to_state") == "firing")).group_by("alert_id").agg(pl.col("at").min().alias("fired_ev"))
    has_tr = ev.filter(pl.col("action") == "transition").select("alert_id").unique().with_columns(
        pl.lit(True).alias("has_transitions"))
    a = (alerts.join(fired, on="alert_id", how="left").join(has_tr, on="alert_id", how="left")
         .with_columns(pl.when(pl.col("fired_ev").is_not_null()).then(pl.col("fired_ev"))
                       .when(pl.col("has_transitions").is_null()).then(pl.col("started_at"))
                       .otherwise(None).alias("fired_at"))
         .filter(pl.col("fired_at").is_not_null()))
    evf = ev.join(a.select("alert_id", "fired_at"), on="alert_id").filter(pl.col("at") >= pl.col("fired_at"))
    ack = (evf.filter((pl.col("action") == "ack") | (pl.col("to_state") == "acknowledged"))
           .group_by("alert_id").agg(pl.col("at").min().alias("ack_ev"), pl.col("actor").first().alias("ack_actor")))
    res = (evf.filter(pl.col("to_state") == "resolved")
           .group_by("alert_id").agg(pl.col("at").min().alias("res_ev"), pl.col("actor").first().alias("res_actor")))
    out = (a.join(ack, on="alert_id", how="left").join(res, on="alert_id", how="left")
           .with_columns(pl.coalesce("ack_ev", "acknowledged_at").alias("acked_at"),
                         pl.coalesce("res_ev", "resolved_at").alias("resolved_at_"),
                         pl.coalesce("acknowledged_by", "ack_actor").alias("responder"),
                         pl.coalesce("res_actor", "resolved_by").alias("resolver"))
           .with_columns(((pl.col("acked_at") - pl.col("fired_at")).dt.total_microseconds() / 1e6).alias("tta_s"),
                         ((pl.col("resolved_at_") - pl.col("fired_at")).dt.total_microseconds() / 1e6).alias("ttr_s"))
           .select("alert_id", "rule_id", "device_id", pl.col("site_id").fill_null(NO_SITE), "severity", "state",
                   "started_at", "fired_at", "acked_at", pl.col("resolved_at_").alias("resolved_at"), "responder",
                   "resolver", "tta_s", "ttr_s")
           .sort("fired_at", "alert_id"))
    return out


def response_times(timings: pl.DataFrame) -> pl.DataFrame:
    """MTTA/MTTR overall, by severity and by site: group_by, group, alerts, acknowledged,
    resolved, mtta_s, mttr_s, median_tta_s, median_ttr_s (means over alerts that got there)."""
    frames = []
    for by, key in (("all", pl.lit("all")), ("severity", pl.col("severity")), ("site", pl.col("site_id"))):
        g = (timings.with_columns(key.alias("group")).group_by("group").agg(
                pl.len().alias("alerts"), pl.col("tta_s").is_not_null().sum().alias("acknowledged"),
                pl.col("ttr_s").is_not_null().sum().alias("resolved"),
                pl.col("tta_s").mean().alias("mtta_s"), pl.col("ttr_s").mean().alias("mttr_s"),
                pl.col("tta_s").median().alias("median_tta_s"), pl.col("ttr_s").median().alias("median_ttr_s"))
             .with_columns(pl.lit(by).alias("group_by")).sort("group"))
        frames.append(g)
    schema = {"group_by": pl.String, "group": pl.String, "alerts": pl.Int64, "acknowledged": pl.Int64,
              "resolved": pl.Int64, "mtta_s": pl.Float64, "mttr_s": pl.Float64, "median_tta_s": pl.Float64,
              "median_ttr_s": pl.Float64}
    if timings.height == 0:
        return pl.DataFrame(schema=schema)
    return pl.concat([f.select(list(schema)).cast(schema) for f in frames])


# ------------------------------------------------------------------ the report


@dataclass(frozen=True)
class SlaReport:
    tenant_id: str
    period: Period
    target_pct: float
    generated_at: datetime
    partial: bool
    avail: Availability
    timings: pl.DataFrame
    response: pl.DataFrame
    files: list[Path] = field(default_factory=list)

    def summary(self) -> dict:
        overall = self.response.filter(pl.col("group_by") == "all").to_dicts()
        o = overall[0] if overall else {}
        return {
            "report": "sla", "tenant_id": self.tenant_id, "period": self.period.label, "kind": self.period.kind,
            "time_zone": self.period.time_zone, "period_start": self.period.start.isoformat(),
            "period_end": self.period.end.isoformat(), "generated_at": self.generated_at.isoformat(),
            "partial": self.partial, **self.avail.tenant,
            "alerts": int(o.get("alerts") or 0), "mtta_s": o.get("mtta_s"), "mttr_s": o.get("mttr_s"),
        }

    def to_json_dict(self) -> dict:
        return {
            "version": 1, "summary": self.summary(),
            "sites": _records(self.avail.sites), "devices": _records(self.avail.devices),
            "incidents": _records(self.avail.incidents), "timeline": _records(self.avail.timeline),
            "response_times": _records(self.response),
            "alerts": _records(self.timings),
        }


def _records(df: pl.DataFrame) -> list[dict]:
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()} for row in df.to_dicts()]


def sla_report_from_frames(tenant: str, period: Period, readings: pl.DataFrame, devices: pl.DataFrame,
                           alerts: pl.DataFrame, events: pl.DataFrame, *, target_pct: float = DEFAULT_TARGET_PCT,
                           now: datetime | None = None, **health_options) -> SlaReport:
    """Pure: the whole report from frames (see the loaders for their columns)."""
    now = now or datetime.now(UTC)
    partial = now < period.end
    avail = availability(readings, devices, period, target_pct=target_pct, until=now if partial else None,
                         **health_options)
    timings = alert_timings(alerts, events).filter((pl.col("fired_at") >= period.start) & (pl.col("fired_at") < period.end))
    return SlaReport(tenant, period, target_pct, now, partial, avail, timings, response_times(timings))


# ------------------------------------------------------------------ loaders (hot store + lake)


def load_devices(conn, tenant: str) -> pl.DataFrame:
    rows = conn.execute("""select device_id, site_id, device_type from devices
                           where tenant_id = %s and status = 'active' order by device_id""", (tenant,)).fetchall()
    conn.commit()
    return pl.DataFrame(rows, schema={"device_id": pl.String, "site_id": pl.String, "device_type": pl.String},
                        orient="row")


def load_readings(conn, lake_dir: Path | None, tenant: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Distinct reading times (device_id, time) in [start, end): from the lake for hours it holds
    (monthly reports reach past the hot store's retention), from the hot store for the rest."""
    return load_reading_times(conn, lake_dir, tenant, start, end).with_columns(
        pl.col("device_id").cast(pl.String)).unique()


def load_reading_times(conn, lake_dir: Path | None, tenant: str, start: datetime, end: datetime) -> pl.DataFrame:
    """``load_readings`` for large periods: device_id as an ``Enum`` (4 bytes a row, not a
    string), and a reading time repeats once per metric of the reading (every consumer counts
    distinct times; deduplicating ~10^8 rows here would be a pass for nothing)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from assets.lake import hour_files, hour_floor

    paths, missing = [], []
    hour = hour_floor(start)
    while hour < end:
        path = hour_files(lake_dir, hour).get(tenant) if lake_dir else None
        if path is not None:
            paths.append(path)
        else:
            missing.append(hour)
        hour += timedelta(hours=1)
    ids, times = [], []
    if paths:  # device ids stay dictionary-encoded from the Parquet pages to the codes
        table = pq.read_table(paths, columns=["device_id", "time"], read_dictionary=["device_id"]).unify_dictionaries()
        for chunk in table["device_id"].chunks:
            ids.append((chunk.dictionary, chunk.indices))
        times.append(table["time"])
    for a, b in _runs(missing):
        rows = conn.execute("""select device_id, time from telemetry where tenant_id = %s and time >= %s and time < %s
                               group by device_id, time""", (tenant, max(a, start), min(b, end))).fetchall()
        if rows:
            dev = pa.array([r[0] for r in rows], pa.string()).dictionary_encode()
            ids.append((dev.dictionary, dev.indices))
            times.append(pa.chunked_array([pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC"))]))
    conn.commit()
    names = pl.Series(sorted({n for d, _ in ids for n in d.to_pylist()}), dtype=pl.String)
    codes = [np.searchsorted(names.to_numpy(), d.to_numpy(zero_copy_only=False)).astype(np.uint32)[i.to_numpy()]
             for d, i in ids]
    frame = pl.DataFrame({
        "device_id": pl.Series(np.concatenate(codes) if codes else np.zeros(0, np.uint32), dtype=pl.UInt32),
        "time": pl.from_arrow(pa.chunked_array([c for t in times for c in t.chunks], pa.timestamp("us", tz="UTC")))
        if times else pl.Series([], dtype=TS)})
    frame = frame.filter((pl.col("time") >= start) & (pl.col("time") < end))
    return frame.with_columns(_enum_from_codes(frame["device_id"], names))


def _enum_from_codes(codes: pl.Series, names: pl.Series) -> pl.Series:
    """An Enum series over ``names`` from UInt32 codes (Polars casts only strings to Enum:
    via an Arrow dictionary array, whose indices are the codes, no string is built per row)."""
    import pyarrow as pa

    arr = pa.DictionaryArray.from_arrays(pa.array(codes.to_numpy(), pa.uint32()), names.to_arrow())
    return pl.from_arrow(arr).cast(pl.Enum(names)).alias(codes.name)


def _runs(hours: Sequence[datetime]) -> Iterable[tuple[datetime, datetime]]:
    """Contiguous hour runs → [a, b) ranges (one query per run, not per hour)."""
    run: list[datetime] = []
    for h in hours:
        if run and h - run[-1] != timedelta(hours=1):
            yield run[0], run[-1] + timedelta(hours=1)
            run = []
        run.append(h)
    if run:
        yield run[0], run[-1] + timedelta(hours=1)


def load_alerts(conn, tenant: str, start: datetime, end: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Alerts that may have fired in [start, end) (shadow alerts excluded) and their events."""
    rows = conn.execute(
        """select alert_id, rule_id, device_id, site_id, severity, state, started_at, acknowledged_at,
                  acknowledged_by, resolved_at, resolved_by
           from alerts where tenant_id = %s and not shadow and started_at < %s
                         and coalesce(resolved_at, 'infinity'::timestamptz) >= %s""",
        (tenant, end, start)).fetchall()
    alerts = pl.DataFrame(rows, schema=_ALERT_SCHEMA, orient="row")
    ev_rows = conn.execute(
        """select e.alert_id, e.at, e.from_state, e.to_state, e.action, e.actor, e.notify
           from alert_events e where e.alert_id = any(%s) order by e.event_id""",
        (alerts["alert_id"].to_list(),)).fetchall() if alerts.height else []
    conn.commit()
    return alerts, pl.DataFrame(ev_rows, schema=_EVENT_SCHEMA, orient="row")


def build_sla_report(conn, tenant: str, period_label: str, *, lake_dir: Path | None = None,
                     settings: ReportSettings | None = None, now: datetime | None = None,
                     **health_options) -> SlaReport:
    period = parse_period(period_label, tenant_zone(conn, tenant))
    settings = settings or load_report_settings(conn, tenant)
    readings = load_reading_times(conn, lake_dir, tenant, period.start - LOOKBACK, period.end)
    alerts, events = load_alerts(conn, tenant, period.start, period.end)
    return sla_report_from_frames(tenant, period, readings, load_devices(conn, tenant), alerts, events,
                                  target_pct=settings.target_pct, now=now, **health_options)


# ------------------------------------------------------------------ writers


def report_basename(report: SlaReport) -> str:
    return f"sla-{report.tenant_id}-{report.period.label}"


def write_report(report: SlaReport, out_dir: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write the report in ``formats`` into ``out_dir``; returns the files (each written atomically)."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UserError(f"unknown format(s) {', '.join(bad) or '(none)'}; expected {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {out_dir}: {exc.strerror}") from None
    base = report_basename(report)
    files: list[Path] = []
    if "csv" in formats:
        tables = {"summary": pl.DataFrame([report.summary()]), "sites": report.avail.sites,
                  "devices": report.avail.devices, "incidents": report.avail.incidents,
                  "response_times": report.response, "alerts": report.timings}
        for name, df in tables.items():
            files.append(_write_text(out_dir / f"{base}-{name}.csv", _csv_text(df)))
    if "json" in formats:
        files.append(_write_text(out_dir / f"{base}.json", json.dumps(report.to_json_dict(), indent=2, default=str)))
    if "html" in formats:
        from assets.report_html import render_sla_html

        files.append(_write_text(out_dir / f"{base}.html", render_sla_html(report)))
    return files


def _csv_text(df: pl.DataFrame) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(df.columns)
    for row in df.iter_rows():
        w.writerow(["" if v is None else (v.isoformat() if isinstance(v, datetime) else v) for v in row])
    return buf.getvalue()


def _write_text(path: Path, text: str) -> Path:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
