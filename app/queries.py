"""Every read the Streamlit app makes, in one place, with tenancy enforced here.

Pages never open connections or write SQL: they call the public functions below.
Tenancy: ``PULSE_APP_TENANT`` pins the viewer to one tenant. Every public function
resolves the caller's tenant filter through ``scope()`` *before* the cached function runs,
and the resolved scope (plus the database URL) is part of the cache key, so a result
computed for one tenant can never be served to a viewer of another.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
import streamlit as st
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

TTL_LIVE = 15  # seconds: device state, KPIs, alerts
TTL_SLOW = 120  # seconds: registry lists, lake bookkeeping, NAB files
ONLINE_WITHIN = timedelta(minutes=10)  # a device seen within this is "online"
MAX_POINTS = 2000  # per series sent to the browser
GRAIN_SECONDS = {"1m": 60, "1h": 3600, "1d": 86400}


class StoreUnavailable(RuntimeError):
    """The database cannot be reached: pages show this message instead of a traceback."""


class TenantAccessDenied(PermissionError):
    """A viewer pinned to one tenant asked for another tenant's data."""


# ------------------------------------------------------------------ tenancy


def viewer_tenant() -> str | None:
    """The tenant this app instance is pinned to (``PULSE_APP_TENANT``), or None for all."""
    value = os.environ.get("PULSE_APP_TENANT", "").strip()
    return value or None


def scope(tenant: str | None = None) -> tuple[str, ...] | None:
    """Tenants a query may read: None = all (unpinned viewer, no filter)."""
    pinned = viewer_tenant()
    if pinned is not None:
        if tenant is not None and tenant != pinned:
            raise TenantAccessDenied(f"this app is limited to tenant {pinned!r}")
        return (pinned,)
    return (tenant,) if tenant else None


def _one_tenant(tenant: str | None) -> str:
    """Device-level reads need exactly one tenant (device ids are unique per tenant)."""
    s = scope(tenant)
    if not s:
        raise ValueError("choose a tenant")
    return s[0]


# ------------------------------------------------------------------ connections


def database_url() -> str:
    from pulse import db
    from pulse.errors import UserError

    try:
        return db.database_url()
    except UserError as exc:
        raise StoreUnavailable(str(exc)) from exc
    except Exception as exc:  # embedded server failed to start
        raise StoreUnavailable(f"the embedded database could not start: {exc}") from exc


@st.cache_resource(show_spinner=False)
def _pool(url: str):
    from psycopg_pool import ConnectionPool

    # Fail fast with one direct attempt: a pool would retry in the background for its
    # whole timeout, and an unreachable store should show a message within seconds.
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        from pulse.db import first_line, redact_url

        raise StoreUnavailable(f"cannot reach the database at {redact_url(url)}: {first_line(exc)}") from exc
    return ConnectionPool(url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True, timeout=15,
                          name="pulse-app")


@contextmanager
def connection(url: str | None = None):
    url = url or database_url()
    try:
        with _pool(url).connection() as conn:
            yield conn
    except psycopg.OperationalError as exc:
        from pulse.db import first_line

        raise StoreUnavailable(f"the database connection failed: {first_line(exc)}") from exc


def _rows(url: str, sql: str, params: dict | Sequence = ()) -> list[dict]:
    with connection(url) as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, params).fetchall()


def _frame(rows: list[dict], schema: dict) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema, orient="row", strict=False)


def clear_caches() -> None:
    st.cache_data.clear()


def ping() -> None:
    """Raise StoreUnavailable unless the store answers."""
    with connection() as conn:
        conn.execute("select 1")


# ------------------------------------------------------------------ registry / fleet


@st.cache_data(ttl=TTL_SLOW, show_spinner=False)
def _tenants(url: str, sc: tuple[str, ...] | None) -> list[dict]:
    return _rows(url, """select tenant_id, name from tenants
                         where (%(ts)s::text[] is null or tenant_id = any(%(ts)s)) order by tenant_id""",
                 {"ts": list(sc) if sc else None})


def tenants() -> list[dict]:
    return _tenants(database_url(), scope())


@st.cache_data(ttl=TTL_SLOW, show_spinner=False)
def _sites(url: str, sc) -> pl.DataFrame:
    rows = _rows(url, """select s.tenant_id, s.site_id, s.name, s.latitude, s.longitude, count(d.device_id) as devices
                         from sites s left join devices d using (tenant_id, site_id)
                         where (%(ts)s::text[] is null or s.tenant_id = any(%(ts)s))
                         group by 1, 2, 3, 4, 5 order by 1, 2""", {"ts": list(sc) if sc else None})
    return _frame(rows, {"tenant_id": pl.String, "site_id": pl.String, "name": pl.String,
                         "latitude": pl.Float64, "longitude": pl.Float64, "devices": pl.Int64})


def sites(tenant: str | None = None) -> pl.DataFrame:
    return _sites(database_url(), scope(tenant))


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _fleet_kpis(url: str, sc, online_s: float) -> dict:
    p = {"ts": list(sc) if sc else None, "online": timedelta(seconds=online_s)}
    dev = _rows(url, """select count(*) as devices,
                               count(s.device_id) filter (where s.last_seen >= now() - %(online)s) as online,
                               count(s.device_id) filter (where s.last_seen < now() - %(online)s) as offline,
                               count(*) filter (where s.device_id is null) as never_seen,
                               count(*) filter (where d.status = 'disabled') as disabled,
                               max(s.last_seen) as newest
                        from devices d left join device_state s using (tenant_id, device_id)
                        where (%(ts)s::text[] is null or d.tenant_id = any(%(ts)s))""", p)[0]
    sev = _rows(url, """select severity, count(*) as n from alerts
                        where state <> 'resolved' and not shadow
                          and (%(ts)s::text[] is null or tenant_id = any(%(ts)s))
                        group by 1 order by 2 desc""", p)
    ing = _rows(url, """select coalesce(sum(rows), 0) as rows,
                               min(hour) as since
                        from ingest_hours
                        where hour >= date_trunc('hour', now()) - interval '1 hour'
                          and (%(ts)s::text[] is null or tenant_id = any(%(ts)s))""", p)[0]
    now = datetime.now(UTC)
    rate = 0.0
    if ing["rows"] and ing["since"] is not None:
        # rows of the previous and the current (partial) hour over the time they span
        rate = float(ing["rows"]) / max((now - ing["since"]).total_seconds(), 1.0)
    newest = dev["newest"]
    return {
        "devices": dev["devices"], "online": dev["online"], "offline": dev["offline"],
        "never_seen": dev["never_seen"], "disabled": dev["disabled"],
        "open_alerts": {r["severity"]: r["n"] for r in sev},
        "ingest_rows_per_s": rate,
        "newest_reading": newest,
        "freshness_s": (now - newest).total_seconds() if newest else None,
    }


def fleet_kpis(tenant: str | None = None) -> dict:
    return _fleet_kpis(database_url(), scope(tenant), ONLINE_WITHIN.total_seconds())


DEVICE_STATUSES = ("online", "offline", "never seen", "disabled")

DEVICE_SCHEMA = {"tenant_id": pl.String, "device_id": pl.String, "name": pl.String, "site_id": pl.String,
                 "device_type": pl.String, "status": pl.String, "tags": pl.String,
                 "last_seen": pl.Datetime("us", "UTC"), "rows": pl.Int64}


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _devices(url: str, sc, search: str, site_ids: tuple[str, ...], tags: tuple[tuple[str, str], ...],
             statuses: tuple[str, ...], online_s: float, limit: int,
             ranges: tuple[tuple[str, float | None, float | None], ...] = ()) -> pl.DataFrame:
    rows = _rows(url, """
        select * from (
            select d.tenant_id, d.device_id, d.name, d.site_id, d.device_type,
                   case when d.status = 'disabled' then 'disabled'
                        when s.device_id is null then 'never seen'
                        when s.last_seen >= now() - %(online)s then 'online'
                        else 'offline' end as status,
                   d.tags::text as tags, s.last_seen, coalesce(s.rows, 0) as rows
            from devices d left join device_state s using (tenant_id, device_id)
            where (%(ts)s::text[] is null or d.tenant_id = any(%(ts)s))
              and (%(q)s = '' or d.device_id ilike %(like)s or coalesce(d.name, '') ilike %(like)s)
              and (cardinality(%(sites)s::text[]) = 0 or d.site_id = any(%(sites)s))
              and d.tags @> %(tags)s
              -- metric ranges: the last value of every listed metric lies within [lo, hi]
              and not exists (select 1 from jsonb_to_recordset(%(ranges)s::jsonb) r(metric text, lo float8, hi float8)
                              where not coalesce(jsonb_typeof(s.last_values -> r.metric) = 'number'
                                                 and (r.lo is null or (s.last_values ->> r.metric)::float8 >= r.lo)
                                                 and (r.hi is null or (s.last_values ->> r.metric)::float8 <= r.hi),
                                                 false))
        ) f
        where cardinality(%(st)s::text[]) = 0 or status = any(%(st)s)
        order by tenant_id, device_id limit %(limit)s""",
        {"ts": list(sc) if sc else None, "online": timedelta(seconds=online_s), "q": search,
         "like": f"%{search}%", "sites": list(site_ids), "tags": Jsonb(dict(tags)), "st": list(statuses),
         "limit": limit, "ranges": Jsonb([{"metric": m, "lo": lo, "hi": hi} for m, lo, hi in ranges])})
    return _frame(rows, DEVICE_SCHEMA)


def devices(tenant: str | None = None, *, search: str = "", site_ids: Sequence[str] = (),
            tags: dict[str, str] | None = None, statuses: Sequence[str] = (), limit: int = 50_000,
            metric_ranges: Sequence[tuple[str, float | None, float | None]] = ()) -> pl.DataFrame:
    """The filtered fleet: tags must all match (``tags @> {...}``), statuses any of DEVICE_STATUSES,
    and for each ``(metric, lo, hi)`` the device's last value of ``metric`` (device_state) lies in
    ``[lo, hi]`` (None = open end; a device without that metric does not match)."""
    ranges = tuple(sorted((m, None if lo is None else float(lo), None if hi is None else float(hi))
                          for m, lo, hi in metric_ranges if m))
    return _devices(database_url(), scope(tenant), search.strip(), tuple(sorted(site_ids)),
                    tuple(sorted((tags or {}).items())), tuple(sorted(statuses)), ONLINE_WITHIN.total_seconds(),
                    limit, ranges)


@st.cache_data(ttl=TTL_SLOW, show_spinner=False)
def _metric_options(url: str, sc) -> list[str]:
    rows = _rows(url, """select distinct k as metric from device_state s, jsonb_object_keys(s.last_values) k
                         where (%(ts)s::text[] is null or s.tenant_id = any(%(ts)s)) order by 1 limit 300""",
                 {"ts": list(sc) if sc else None})
    return [r["metric"] for r in rows]


def metric_options(tenant: str | None = None) -> list[str]:
    """Metrics that devices of the scope have a last value for (the fleet's metric-range filter)."""
    return _metric_options(database_url(), scope(tenant))


# ------------------------------------------------------------------ saved fleet filters

ALL_TENANTS_KEY = "*"  # owner of filters saved in the all-tenants view (unpinned viewers only)


def _filter_owner(tenant: str | None) -> str:
    sc = scope(tenant)
    return sc[0] if sc else ALL_TENANTS_KEY


def saved_filters(tenant: str | None = None) -> dict[str, dict]:
    """Named filters saved for this tenant (or for the all-tenants view): name → filter state."""
    rows = _rows(database_url(), """select name, filters from app_saved_filters where tenant_id = %s
                                    order by name""", (_filter_owner(tenant),))
    return {r["name"]: r["filters"] for r in rows}


def save_filter(tenant: str | None, name: str, filters: dict, user: str | None = None) -> None:
    """Create or replace a named filter of this tenant (the app's own table, not alerting's)."""
    name = name.strip()
    if not name or len(name) > 80:
        raise ValueError("a filter name needs 1 to 80 characters")
    with connection() as conn:
        conn.execute("""insert into app_saved_filters (tenant_id, name, filters, created_by) values (%s, %s, %s, %s)
                        on conflict (tenant_id, name) do update set filters = excluded.filters,
                            created_by = excluded.created_by, updated_at = now()""",
                     (_filter_owner(tenant), name, Jsonb(filters), user))


def delete_filter(tenant: str | None, name: str) -> bool:
    with connection() as conn:
        return conn.execute("delete from app_saved_filters where tenant_id = %s and name = %s",
                            (_filter_owner(tenant), name)).rowcount > 0


@st.cache_data(ttl=TTL_SLOW, show_spinner=False)
def _tag_options(url: str, sc) -> list[str]:
    rows = _rows(url, """select distinct t.key || '=' || t.value as tag
                         from devices d, jsonb_each_text(d.tags) t
                         where (%(ts)s::text[] is null or d.tenant_id = any(%(ts)s)) order by 1 limit 500""",
                 {"ts": list(sc) if sc else None})
    return [r["tag"] for r in rows]


def tag_options(tenant: str | None = None) -> list[str]:
    return _tag_options(database_url(), scope(tenant))


def parse_tags(pairs: Sequence[str]) -> dict[str, str]:
    """``["fw=1.4", "type=pump"]`` → dict (the key=value options of ``tag_options``)."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return out


# ------------------------------------------------------------------ one device


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _device(url: str, tenant: str, device_id: str) -> dict | None:
    rows = _rows(url, """select d.tenant_id, d.device_id, d.name, d.site_id, d.device_type, d.tags, d.status,
                                d.token_created_at, d.created_at, s.last_seen, s.last_received_at,
                                s.last_values, s.rows,
                                now() - d.token_created_at as token_age
                         from devices d left join device_state s using (tenant_id, device_id)
                         where d.tenant_id = %s and d.device_id = %s""", (tenant, device_id))
    return rows[0] if rows else None


def device(tenant: str | None, device_id: str) -> dict | None:
    return _device(database_url(), _one_tenant(tenant), device_id)


@st.cache_data(ttl=TTL_SLOW, show_spinner=False)
def _device_metrics(url: str, tenant: str, device_id: str) -> list[str]:
    rows = _rows(url, """select coalesce((select array(select jsonb_object_keys(last_values) order by 1)
                                          from device_state where tenant_id = %(t)s and device_id = %(d)s),
                                         '{}') as keys""", {"t": tenant, "d": device_id})
    keys = rows[0]["keys"] if rows else []
    if keys:
        return list(keys)
    # no device_state yet (e.g. data written around ingest): ask the series index
    rows = _rows(url, """select distinct metric from telemetry where tenant_id = %(t)s and device_id = %(d)s
                         order by 1 limit 200""", {"t": tenant, "d": device_id})
    return [r["metric"] for r in rows]


def device_metrics(tenant: str | None, device_id: str) -> list[str]:
    return _device_metrics(database_url(), _one_tenant(tenant), device_id)


def pick_grain(span_s: float, raw_points: int, max_points: int = MAX_POINTS) -> str:
    """The finest grain that keeps a series within ``max_points``: raw, 1m, 1h or 1d."""
    if raw_points <= max_points:
        return "raw"
    for grain in ("1m", "1h", "1d"):
        if span_s / GRAIN_SECONDS[grain] <= max_points:
            return grain
    return "1d"


def downsample(frame: pl.DataFrame, max_points: int = MAX_POINTS, by: str = "metric",
               time_col: str = "time", value_col: str = "value") -> pl.DataFrame:
    """At most ``max_points`` rows per series, keeping each chunk's min and max (peaks survive)."""
    if frame.is_empty():
        return frame
    parts = []
    for _, part in frame.sort([by, time_col]).group_by(by, maintain_order=True):
        n = part.height
        if n <= max_points:
            parts.append(part)
            continue
        chunks = max_points // 2
        idx = (np.arange(n) * chunks // n)
        keep = (part.with_columns(pl.Series("_chunk", idx), pl.int_range(n).alias("_i"))
                .group_by("_chunk")
                .agg(pl.col("_i").get(pl.col(value_col).arg_min()).alias("lo"),
                     pl.col("_i").get(pl.col(value_col).arg_max()).alias("hi")))
        rows = np.unique(np.concatenate([keep["lo"].to_numpy(), keep["hi"].to_numpy()]))
        parts.append(part[rows])
    return pl.concat(parts)


SERIES_SCHEMA = {"metric": pl.String, "time": pl.Datetime("us", "UTC"), "value": pl.Float64,
                 "min": pl.Float64, "max": pl.Float64, "source": pl.String}


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _series(url: str, tenant: str, device_id: str, metrics: tuple[str, ...], start: datetime, end: datetime,
            grain: str, lake_dir: str, max_points: int) -> tuple[pl.DataFrame, str]:
    p = {"t": tenant, "d": device_id, "m": list(metrics), "s": start, "e": end}
    if grain == "auto":
        counts = _rows(url, """select count(*) as n, min(time) as first from telemetry
                               where tenant_id = %(t)s and device_id = %(d)s
                               and metric = any(%(m)s) and time >= %(s)s and time < %(e)s
                               group by metric order by 1 desc limit 1""", p)
        span = (end - start).total_seconds()
        n, first = (counts[0]["n"], counts[0]["first"]) if counts else (0, None)
        # Raw rows only when they fit AND reach back to the range's start: older hours may have
        # left the hot store (retention) and live in the lake's rollups only.
        covers = first is not None and (first - start).total_seconds() <= max(3600.0, 0.05 * span)
        grain = pick_grain(span, n if covers or span <= 86400 else max_points + 1, max_points)
    if grain == "raw":
        rows = _rows(url, """select metric, time, value, value as min, value as max, 'raw' as source
                             from telemetry
                             where tenant_id = %(t)s and device_id = %(d)s and metric = any(%(m)s)
                               and time >= %(s)s and time < %(e)s order by metric, time""", p)
        frame = _frame(rows, SERIES_SCHEMA)
    else:
        from assets.realtime import query_rollup

        with connection(url) as conn:
            roll = query_rollup(conn, Path(lake_dir), tenant, [device_id], list(metrics), start, end, grain)
        frame = roll.select(pl.col("metric"), pl.col("bucket").alias("time"), pl.col("mean").alias("value"),
                            pl.col("min"), pl.col("max"), pl.col("source")).cast(SERIES_SCHEMA)
    return downsample(frame, max_points), grain


def series(tenant: str | None, device_id: str, metrics: Sequence[str], start: datetime, end: datetime,
           grain: str = "auto", max_points: int = MAX_POINTS) -> tuple[pl.DataFrame, str]:
    """Time series of a device's metrics, ≤ ``max_points`` per metric. Returns (frame, grain used).

    Raw rows when they fit, otherwise the lake rollups + live tail (``query_rollup``)."""
    from pulse.settings import get_settings

    if not metrics:
        return pl.DataFrame(schema=SERIES_SCHEMA), grain
    return _series(database_url(), _one_tenant(tenant), device_id, tuple(sorted(metrics)), start, end, grain,
                   str(get_settings().lake_path), max_points)


ALERT_SCHEMA = {"alert_id": pl.String, "tenant_id": pl.String, "rule_id": pl.String, "device_id": pl.String,
                "site_id": pl.String, "severity": pl.String, "state": pl.String, "summary": pl.String,
                "value": pl.Float64, "count": pl.Int64, "started_at": pl.Datetime("us", "UTC"),
                "last_seen": pl.Datetime("us", "UTC"), "acknowledged_by": pl.String,
                "resolved_at": pl.Datetime("us", "UTC"), "ended_at": pl.Datetime("us", "UTC")}
_ALERT_COLS = """alert_id, tenant_id, rule_id, device_id, site_id, severity, state, summary, value, count,
                 started_at, last_seen, acknowledged_by, resolved_at, coalesce(resolved_at, now()) as ended_at"""


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _device_alerts(url: str, tenant: str, device_id: str, start: datetime, end: datetime) -> pl.DataFrame:
    rows = _rows(url, f"""select {_ALERT_COLS} from alerts
                          where tenant_id = %(t)s and device_id = %(d)s and not shadow
                            and started_at < %(e)s and coalesce(resolved_at, now()) >= %(s)s
                          order by started_at""", {"t": tenant, "d": device_id, "s": start, "e": end})
    return _frame(rows, ALERT_SCHEMA)


def device_alerts(tenant: str | None, device_id: str, start: datetime, end: datetime) -> pl.DataFrame:
    return _device_alerts(database_url(), _one_tenant(tenant), device_id, start, end)


SCORE_SCHEMA = {"metric": pl.String, "time": pl.Datetime("us", "UTC"), "score": pl.Float64}


def score_threshold() -> float:
    """The calibrated score an ``anomaly`` rule compares: a model's threshold maps to this level."""
    from detectors.feedback import REFERENCE_LEVEL

    return float(REFERENCE_LEVEL)


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _anomaly_scores(url: str, tenant: str, device_id: str, metrics: tuple[str, ...], start: datetime,
                    end: datetime, max_points: int) -> pl.DataFrame:
    rows = _rows(url, """select metric, time, score from anomaly_scores
                         where tenant_id = %(t)s and device_id = %(d)s and metric = any(%(m)s)
                           and time >= %(s)s and time < %(e)s order by metric, time""",
                 {"t": tenant, "d": device_id, "m": list(metrics), "s": start, "e": end})
    return downsample(_frame(rows, SCORE_SCHEMA), max_points, value_col="score")


def anomaly_scores(tenant: str | None, device_id: str, metrics: Sequence[str], start: datetime, end: datetime,
                   max_points: int = MAX_POINTS) -> pl.DataFrame:
    """Calibrated anomaly scores (``anomaly_scores``, written by the hourly scoring asset) of a
    device's metrics in [start, end), ≤ ``max_points`` per metric (peaks kept)."""
    if not metrics:
        return pl.DataFrame(schema=SCORE_SCHEMA)
    return _anomaly_scores(database_url(), _one_tenant(tenant), device_id, tuple(sorted(metrics)), start, end,
                           max_points)


DEVICE_SILENCE_SCHEMA = {"silence_id": pl.Int64, "from": pl.Datetime("us", "UTC"), "to": pl.Datetime("us", "UTC"),
                         "matchers": pl.String, "created_by": pl.String, "comment": pl.String}
_DEVICE_LABELS = ("tenant_id", "device_id", "site_id", "device_type")
MAX_OCCURRENCES = 500  # of one recurring silence inside the chart's range


def _silence_spans(s, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) in which silence ``s`` (an ``alerting.silences.Silence``) is in effect."""
    from alerting.silences import occurrence_at

    lo = max(start, s.starts_at)
    hi = min(end, s.ends_at, s.expired_at or end)
    if lo >= hi:
        return []
    if s.recurrence is None:
        return [(lo, hi)]
    spans, at = [], hi - timedelta(microseconds=1)
    for _ in range(MAX_OCCURRENCES):
        occ = occurrence_at(s.recurrence, s.starts_at, at, s.time_zone)
        if occ is None:
            break
        occ_end = occ + timedelta(seconds=s.duration_s or 0)
        if occ_end <= lo:
            break
        if min(occ_end, hi) > max(occ, lo):
            spans.append((max(occ, lo), min(occ_end, hi)))
        at = occ - timedelta(microseconds=1)
    return sorted(spans)


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _device_silences(url: str, tenant: str, device_id: str, start: datetime, end: datetime,
                     pinned: str | None) -> pl.DataFrame:
    import json

    from alerting.silences import Silence, list_silences, matches

    info = _device(url, tenant, device_id)
    if info is None:
        return pl.DataFrame(schema=DEVICE_SILENCE_SCHEMA)
    labels = {k: info[k] for k in _DEVICE_LABELS if info.get(k) is not None}
    labels.update({f"tag.{k}": str(v) for k, v in (info["tags"] or {}).items()})
    with connection(url) as conn:
        items = list_silences(conn, tenant_id=tenant, include_expired=True)
    rows = []
    for item in items:
        if pinned is not None and item["tenant_id"] != pinned:
            continue  # a pinned viewer never sees global silences (they may name other tenants' devices)
        # Device-level matchers must match this device; the others (rule, severity, rule labels)
        # narrow which of its alerts are silenced, so the silence still concerns this device.
        device_level = {k: v for k, v in item["matchers"].items() if k in _DEVICE_LABELS or k.startswith("tag.")}
        if device_level and not matches(device_level, labels):
            continue
        s = Silence(**{k: item[k] for k in ("silence_id", "matchers", "starts_at", "ends_at", "tenant_id",
                                            "recurrence", "duration_s", "time_zone", "comment", "created_by",
                                            "expired_at")})
        for lo, hi in _silence_spans(s, start, end):
            rows.append({"silence_id": s.silence_id, "from": lo, "to": hi,
                         "matchers": json.dumps(dict(s.matchers), sort_keys=True), "created_by": s.created_by,
                         "comment": s.comment})
    return _frame(rows, DEVICE_SILENCE_SCHEMA)


def device_silences(tenant: str | None, device_id: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Spans of [start, end) in which a silence concerning this device was (or will be) in effect —
    past, active and scheduled, recurring ones expanded — matched with ``alerting.silences.matches``."""
    return _device_silences(database_url(), _one_tenant(tenant), device_id, start, end, viewer_tenant())


HEALTH_SCHEMA = {"status": pl.String, "start": pl.Datetime("us", "UTC"), "end": pl.Datetime("us", "UTC"),
                 "duration_s": pl.Float64}
HEALTH_READINGS = 20_000  # reading times handed to the health function at most (bucketed beyond)


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _device_health(url: str, tenant: str, device_id: str, start: datetime, end: datetime) -> dict:
    from assets.health import DEFAULT_MULTIPLIER, device_health

    first = _rows(url, """select min(time) as first from telemetry
                          where tenant_id = %(t)s and device_id = %(d)s and time < %(e)s""",
                  {"t": tenant, "d": device_id, "e": end})[0]["first"]
    # Before the device's first raw row the hot store knows nothing (not provisioned yet, or
    # past retention): the timeline starts there instead of calling that time "offline".
    # (the session's time zone may be named Etc/UTC: polars compares only identical zones)
    since = (max(start, first) if first is not None else start).astimezone(UTC)
    end = end.astimezone(UTC)
    bucket_s = max(1, int((end - since).total_seconds() // HEALTH_READINGS))
    rows = _rows(url, """select distinct date_bin(make_interval(secs => %(b)s), time, %(s)s) as time
                         from telemetry where tenant_id = %(t)s and device_id = %(d)s
                           and time >= %(s)s and time < %(e)s""",
                 {"t": tenant, "d": device_id, "s": since, "e": end, "b": bucket_s})
    readings = pl.DataFrame({"tenant_id": [tenant] * len(rows), "device_id": [device_id] * len(rows),
                             "time": [r["time"] for r in rows]},
                            schema={"tenant_id": pl.String, "device_id": pl.String, "time": pl.Datetime("us", "UTC")})
    info = _device(url, tenant, device_id) or {}
    devices = pl.DataFrame({"tenant_id": [tenant], "device_id": [device_id], "device_type": [info.get("device_type")]},
                           schema={"tenant_id": pl.String, "device_id": pl.String, "device_type": pl.String})
    result = device_health(readings, devices, since, end)
    return {"intervals": result.intervals.select(list(HEALTH_SCHEMA)).cast(HEALTH_SCHEMA),
            "since": since, "bucket_s": bucket_s, "has_readings": first is not None, "multiplier": DEFAULT_MULTIPLIER}


def device_health(tenant: str | None, device_id: str, start: datetime, end: datetime) -> dict:
    """Online/offline intervals of one device in [start, end): ``assets.health.device_health``
    (offline after 3 × the device's median reporting gap) over its reading times in the hot
    store — bucketed to keep ≤ ``HEALTH_READINGS`` for long ranges. Returns ``intervals``,
    ``since`` (the timeline's start), ``bucket_s``, ``has_readings`` and ``multiplier``."""
    return _device_health(database_url(), _one_tenant(tenant), device_id, start, end)


# ------------------------------------------------------------------ alerts


ALERT_STATES = ("pending", "firing", "acknowledged", "flapping", "resolved")


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _alerts(url: str, sc, states: tuple[str, ...], severities: tuple[str, ...], search: str,
            since: datetime | None, limit: int) -> pl.DataFrame:
    rows = _rows(url, f"""select {_ALERT_COLS} from alerts
                          where (%(ts)s::text[] is null or tenant_id = any(%(ts)s)) and not shadow
                            and (cardinality(%(st)s::text[]) = 0 or state = any(%(st)s))
                            and (cardinality(%(sev)s::text[]) = 0 or severity = any(%(sev)s))
                            and (%(q)s = '' or alert_id ilike %(like)s or rule_id ilike %(like)s
                                 or coalesce(device_id, '') ilike %(like)s or coalesce(summary, '') ilike %(like)s)
                            and (%(since)s::timestamptz is null or coalesce(resolved_at, now()) >= %(since)s)
                          order by started_at desc limit %(limit)s""",
                 {"ts": list(sc) if sc else None, "st": list(states), "sev": list(severities), "q": search,
                  "like": f"%{search}%", "since": since, "limit": limit})
    return _frame(rows, ALERT_SCHEMA)


def alerts(tenant: str | None = None, *, states: Sequence[str] = (), severities: Sequence[str] = (),
           search: str = "", since: datetime | None = None, limit: int = 1000) -> pl.DataFrame:
    return _alerts(database_url(), scope(tenant), tuple(sorted(states)), tuple(sorted(severities)),
                   search.strip(), since, limit)


@st.cache_data(ttl=TTL_SLOW, show_spinner=False)
def _severities(url: str, sc) -> list[str]:
    rows = _rows(url, """select distinct severity from alerts where (%(ts)s::text[] is null or tenant_id = any(%(ts)s))
                         order by 1""", {"ts": list(sc) if sc else None})
    return [r["severity"] for r in rows]


def severities(tenant: str | None = None) -> list[str]:
    return _severities(database_url(), scope(tenant))


EVENT_SCHEMA = {"event_id": pl.Int64, "at": pl.Datetime("us", "UTC"), "action": pl.String,
                "from_state": pl.String, "to_state": pl.String, "actor": pl.String, "reason": pl.String,
                "value": pl.Float64, "notify": pl.Boolean, "silenced": pl.Boolean}


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _alert_events(url: str, sc, alert_id: str) -> pl.DataFrame:
    # joined to alerts so the tenant scope applies to the audit trail too
    rows = _rows(url, """select e.event_id, e.at, e.action, e.from_state, e.to_state, e.actor, e.reason, e.value,
                                e.notify, e.silenced
                         from alert_events e join alerts a using (alert_id)
                         where e.alert_id = %(a)s and (%(ts)s::text[] is null or a.tenant_id = any(%(ts)s))
                         order by e.event_id""", {"a": alert_id, "ts": list(sc) if sc else None})
    return _frame(rows, EVENT_SCHEMA)


def alert_events(tenant: str | None, alert_id: str) -> pl.DataFrame:
    return _alert_events(database_url(), scope(tenant), alert_id)


def alert_visible(tenant: str | None, alert_id: str) -> bool:
    """Whether the viewer may see (and act on) this alert: checked before any action."""
    rows = _rows(database_url(), """select 1 from alerts where alert_id = %(a)s
                                    and (%(ts)s::text[] is null or tenant_id = any(%(ts)s))""",
                 {"a": alert_id, "ts": list(scope(tenant) or []) or None})
    return bool(rows)


# ------------------------------------------------------------------ notification deliveries


DELIVERY_SCHEMA = {"delivery_id": pl.Int64, "alert_id": pl.String, "created_at": pl.Datetime("us", "UTC"),
                   "event": pl.String, "source": pl.String, "channel_id": pl.String, "target": pl.String,
                   "status": pl.String, "attempts": pl.Int64, "last_status_code": pl.Int64,
                   "last_error": pl.String, "last_attempt_at": pl.Datetime("us", "UTC"),
                   "next_attempt_at": pl.Datetime("us", "UTC"), "sent_at": pl.Datetime("us", "UTC")}
DELIVERY_STATUSES = ("pending", "failed", "sent", "dead")  # alerting.delivery.STATUSES
REDRIVABLE = ("failed", "dead")  # what `pulse deliveries retry` re-queues


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _deliveries(url: str, sc, alert_id: str | None, statuses: tuple[str, ...], limit: int) -> pl.DataFrame:
    # joined to alerts so the tenant scope applies to the delivery log too
    rows = _rows(url, """select d.delivery_id, d.alert_id, d.created_at, d.event, d.source, d.channel_id,
                                coalesce(nullif(d.recipient, '') || coalesce(' <' || d.address || '>', ''),
                                         d.address, d.source || coalesce(' ' || coalesce(d.route_id, d.policy_id), ''))
                                    as target,
                                d.status, d.attempts, d.last_status_code, d.last_error,
                                (select max(t.at) from delivery_attempts t
                                 where t.delivery_id = d.delivery_id) as last_attempt_at,
                                case when d.status in ('pending', 'failed') then d.next_attempt_at end
                                    as next_attempt_at, d.sent_at
                         from deliveries d join alerts a using (alert_id)
                         where (%(a)s::text is null or d.alert_id = %(a)s)
                           and (cardinality(%(st)s::text[]) = 0 or d.status = any(%(st)s))
                           and (%(ts)s::text[] is null or a.tenant_id = any(%(ts)s))
                         order by d.delivery_id desc limit %(n)s""",
                 {"a": alert_id, "st": list(statuses), "ts": list(sc) if sc else None, "n": limit})
    return _frame(rows, DELIVERY_SCHEMA)


def deliveries(tenant: str | None = None, *, alert_id: str | None = None, statuses: Sequence[str] = (),
               limit: int = 500) -> pl.DataFrame:
    """The delivery log (``deliveries`` + their last attempt), newest first, within the viewer's
    tenant scope: one alert's notifications, or every alert's filtered by status."""
    return _deliveries(database_url(), scope(tenant), alert_id, tuple(sorted(statuses)), limit)


def delivery_visible(tenant: str | None, delivery_id: int) -> dict | None:
    """The delivery (id, alert, status) if the viewer may see it and act on it, else None."""
    rows = _rows(database_url(), """select d.delivery_id, d.alert_id, d.channel_id, d.status
                                    from deliveries d join alerts a using (alert_id)
                                    where d.delivery_id = %(d)s
                                      and (%(ts)s::text[] is null or a.tenant_id = any(%(ts)s))""",
                 {"d": delivery_id, "ts": list(scope(tenant) or []) or None})
    return rows[0] if rows else None


# ------------------------------------------------------------------ data health


CHECK_SCHEMA = {"asset_key": pl.String, "check_name": pl.String, "partition_key": pl.String, "passed": pl.Boolean,
                "severity": pl.String, "metadata": pl.String, "checked_at": pl.Datetime("us", "UTC")}


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _check_results(url: str, with_metadata: bool, limit: int) -> pl.DataFrame:
    rows = _rows(url, """select * from (
                             select distinct on (asset_key, check_name, partition_key)
                                    asset_key, check_name, partition_key, passed, severity,
                                    case when %(md)s then metadata::text end as metadata, checked_at
                             from asset_check_results
                             order by asset_key, check_name, partition_key, checked_at desc) latest
                         order by passed, checked_at desc limit %(n)s""", {"md": with_metadata, "n": limit})
    return _frame(rows, CHECK_SCHEMA)


def check_results(limit: int = 500) -> pl.DataFrame:
    """Newest result per (asset, check, partition). Checks are platform-wide; their metadata
    can describe every tenant, so a viewer pinned to one tenant sees pass/fail only."""
    return _check_results(database_url(), viewer_tenant() is None, limit)


LAKE_SCHEMA = {"tenant_id": pl.String, "hours_exported": pl.Int64, "newest_hour": pl.Datetime("us", "UTC"),
               "last_export": pl.Datetime("us", "UTC"), "lake_rows": pl.Int64, "lake_bytes": pl.Int64,
               "stale_hours": pl.Int64, "freshness_s": pl.Float64}


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _lake_freshness(url: str, sc) -> pl.DataFrame:
    rows = _rows(url, """
        with ex as (select tenant_id, count(*) as hours_exported, max(hour) as newest_hour,
                           max(exported_at) as last_export, sum(rows) as lake_rows, sum(bytes) as lake_bytes
                    from lake_exports where (%(ts)s::text[] is null or tenant_id = any(%(ts)s)) group by 1),
             stale as (select h.tenant_id, count(*) as stale_hours
                       from ingest_hours h left join lake_exports e using (tenant_id, hour)
                       where (%(ts)s::text[] is null or h.tenant_id = any(%(ts)s))
                         and (e.exported_at is null or h.last_ingested_at >= e.exported_at)
                       group by 1)
        select coalesce(ex.tenant_id, stale.tenant_id) as tenant_id, coalesce(hours_exported, 0) as hours_exported,
               newest_hour, last_export, coalesce(lake_rows, 0) as lake_rows, coalesce(lake_bytes, 0) as lake_bytes,
               coalesce(stale_hours, 0) as stale_hours,
               extract(epoch from now() - (newest_hour + interval '1 hour'))::float8 as freshness_s
        from ex full join stale using (tenant_id) order by 1""", {"ts": list(sc) if sc else None})
    return _frame(rows, LAKE_SCHEMA)


def lake_freshness(tenant: str | None = None) -> pl.DataFrame:
    """Per tenant: exported hours, newest exported hour, lag, hours waiting for (re-)export."""
    return _lake_freshness(database_url(), scope(tenant))


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _quarantine_counts(url: str, tenant: str | None) -> dict[str, int]:
    from pulse import quarantine

    with connection(url) as conn:
        return quarantine.counts(conn, tenant)


def quarantine_counts(tenant: str | None = None) -> dict[str, int]:
    sc = scope(tenant)
    return _quarantine_counts(database_url(), sc[0] if sc else None)


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _quarantine_samples(url: str, tenant: str | None, reason: str | None, limit: int) -> list[dict]:
    from pulse import quarantine

    with connection(url) as conn:
        return quarantine.recent(conn, reason=reason, tenant_id=tenant, limit=limit)


def quarantine_samples(tenant: str | None = None, reason: str | None = None, limit: int = 20) -> list[dict]:
    sc = scope(tenant)
    return _quarantine_samples(database_url(), sc[0] if sc else None, reason, limit)


INGEST_SCHEMA = {"hour": pl.Datetime("us", "UTC"), "rows": pl.Int64, "last_ingested_at": pl.Datetime("us", "UTC")}


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _ingest_hours(url: str, sc, hours: int) -> pl.DataFrame:
    rows = _rows(url, """select hour, sum(rows)::bigint as rows, max(last_ingested_at) as last_ingested_at
                         from ingest_hours
                         where hour >= date_trunc('hour', now()) - make_interval(hours => %(h)s)
                           and (%(ts)s::text[] is null or tenant_id = any(%(ts)s))
                         group by 1 order by 1""", {"h": hours, "ts": list(sc) if sc else None})
    return _frame(rows, INGEST_SCHEMA)


def ingest_hours(tenant: str | None = None, hours: int = 48) -> pl.DataFrame:
    return _ingest_hours(database_url(), scope(tenant), hours)


DELIVERY_STATS_SCHEMA = {"channel_id": pl.String, "status": pl.String, "deliveries": pl.Int64}


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _delivery_metrics(url: str, sc, hours: int) -> dict:
    p = {"ts": list(sc) if sc else None, "h": hours}
    by = _rows(url, """select d.channel_id, d.status, count(*) as deliveries
                       from deliveries d join alerts a using (alert_id)
                       where d.created_at >= now() - make_interval(hours => %(h)s)
                         and (%(ts)s::text[] is null or a.tenant_id = any(%(ts)s))
                       group by 1, 2 order by 1, 2""", p)
    att = _rows(url, """select count(*) as attempts, count(*) filter (where not t.ok) as failed_attempts,
                               percentile_cont(0.95) within group (order by t.latency_ms) as p95_latency_ms
                        from delivery_attempts t join deliveries d using (delivery_id) join alerts a using (alert_id)
                        where t.at >= now() - make_interval(hours => %(h)s)
                          and (%(ts)s::text[] is null or a.tenant_id = any(%(ts)s))""", p)[0]
    frame = _frame(by, DELIVERY_STATS_SCHEMA)
    total = int(frame["deliveries"].sum() or 0)
    failing = int(frame.filter(pl.col("status").is_in(REDRIVABLE))["deliveries"].sum() or 0)
    return {"by_channel_status": frame, "deliveries": total,
            "sent": int(frame.filter(pl.col("status") == "sent")["deliveries"].sum() or 0),
            "failing": failing, "failure_rate": failing / total if total else None,
            "attempts": att["attempts"], "failed_attempts": att["failed_attempts"],
            "attempt_failure_rate": att["failed_attempts"] / att["attempts"] if att["attempts"] else None,
            "p95_latency_ms": att["p95_latency_ms"]}


def delivery_metrics(tenant: str | None = None, hours: int = 24) -> dict:
    """Notifications of the last ``hours`` in the viewer's scope: deliveries by channel × status,
    failure rate (failed + dead over all deliveries created), attempts and their failure rate."""
    return _delivery_metrics(database_url(), scope(tenant), hours)


# ------------------------------------------------------------------ NAB corpus (detector lab)


def nab_dir() -> Path | None:
    from detectors.nab import NabNotFoundError, resolve_nab_dir

    try:
        return resolve_nab_dir()
    except NabNotFoundError:
        return None


@st.cache_data(ttl=TTL_SLOW, show_spinner=False)
def _nab_files(root: str) -> list[str]:
    return sorted(f"{p.parent.name}/{p.name}" for p in (Path(root) / "data").glob("*/*.csv"))


def nab_files() -> list[str]:
    root = nab_dir()
    return _nab_files(str(root)) if root else []


@st.cache_data(ttl=TTL_SLOW, show_spinner=False, max_entries=8)
def _nab_corpus(root: str, key: str):
    from detectors.nab import load_corpus

    corpus = load_corpus(root, only=[key])
    if not corpus.files:
        raise FileNotFoundError(f"NAB file {key!r} not found under {root}")
    return corpus


def nab_corpus(key: str):
    """A one-file NAB corpus (the file, its label windows and the scoring profiles)."""
    root = nab_dir()
    if root is None:
        raise FileNotFoundError("NAB corpus not found: set PULSE_NAB_DIR")
    return _nab_corpus(str(root), key)


# ------------------------------------------------------------------ silences (alerts page)


SILENCE_SCHEMA = {"silence_id": pl.Int64, "tenant_id": pl.String, "matchers": pl.String,
                  "starts_at": pl.Datetime("us", "UTC"), "ends_at": pl.Datetime("us", "UTC"),
                  "recurrence": pl.String, "active_now": pl.Boolean, "created_by": pl.String, "comment": pl.String}


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _silences(url: str, sc, pinned: str | None) -> pl.DataFrame:
    import json

    from alerting.silences import list_silences

    with connection(url) as conn:
        items = list_silences(conn, tenant_id=sc[0] if sc and len(sc) == 1 else None)
    # a viewer pinned to one tenant sees only that tenant's silences (global ones may name others' devices)
    items = [s for s in items if pinned is None or s["tenant_id"] == pinned]
    rows = [{**{k: s.get(k) for k in SILENCE_SCHEMA}, "matchers": json.dumps(s["matchers"], sort_keys=True)}
            for s in items]
    return _frame(rows, SILENCE_SCHEMA)


def silences(tenant: str | None = None) -> pl.DataFrame:
    """Silences that have not ended (through ``alerting.silences.list_silences``), with ``active_now``."""
    return _silences(database_url(), scope(tenant), viewer_tenant())


# ------------------------------------------------------------------ SLA reports


def lake_dir() -> Path | None:
    from pulse.settings import get_settings

    path = get_settings().lake_path
    return path if path.exists() else None


@st.cache_data(ttl=TTL_SLOW, show_spinner=False)
def _tenant_zone(url: str, tenant: str) -> str:
    from assets.sla import tenant_zone

    with connection(url) as conn:
        return tenant_zone(conn, tenant)


def tenant_time_zone(tenant: str | None) -> str:
    return _tenant_zone(database_url(), _one_tenant(tenant))


@st.cache_data(ttl=300, show_spinner=False, max_entries=16)
def _sla_report(url: str, tenant: str, period_label: str, site: str | None, lake: str | None):
    from assets import sla

    with connection(url) as conn:
        period = sla.parse_period(period_label, sla.tenant_zone(conn, tenant))
        settings = sla.load_report_settings(conn, tenant)
        devs = sla.load_devices(conn, tenant)
        if site is not None:
            devs = devs.filter(pl.col("site_id").fill_null(sla.NO_SITE) == site)
        readings = sla.load_readings(conn, Path(lake) if lake else None, tenant, period.start - sla.LOOKBACK,
                                     period.end)
        alerts, events = sla.load_alerts(conn, tenant, period.start, period.end)
    if site is not None:
        readings = readings.filter(pl.col("device_id").is_in(devs["device_id"].implode()))
        alerts = alerts.filter(pl.col("site_id").fill_null(sla.NO_SITE) == site)
    return sla.sla_report_from_frames(tenant, period, readings, devs, alerts, events, target_pct=settings.target_pct)


def sla_report(tenant: str | None, period_label: str, site: str | None = None):
    """The SLA report (``assets.sla``'s pure functions over its loaders) of one tenant — or one
    of its sites — for a period label (YYYY-MM or YYYY-MM-DD, tenant-local). Raises UserError
    for a bad period."""
    lake = lake_dir()
    return _sla_report(database_url(), _one_tenant(tenant), period_label.strip(), site, str(lake) if lake else None)


RUN_SCHEMA = {"run_id": pl.Int64, "tenant_id": pl.String, "period": pl.String, "formats": pl.String,
              "started_at": pl.Datetime("us", "UTC"), "finished_at": pl.Datetime("us", "UTC"), "status": pl.String,
              "delivery": pl.String, "path": pl.String, "error": pl.String}


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _report_runs(url: str, sc, limit: int) -> pl.DataFrame:
    from assets.sla_delivery import report_runs

    with connection(url) as conn:
        if sc is None:
            items = report_runs(conn, None, limit)
        else:
            items = [r for t in sc for r in report_runs(conn, t, limit)]
    rows = []
    for r in items:
        sent = r["delivered_to"] or []
        delivery = ", ".join(f"{d.get('kind')} {d.get('target')}: {'ok' if d.get('ok') else 'FAILED'}" for d in sent)
        rows.append({**{k: r.get(k) for k in RUN_SCHEMA}, "formats": ",".join(r["formats"] or []),
                     "delivery": delivery or "not delivered"})
    return _frame(rows, RUN_SCHEMA).sort("run_id", descending=True)


def report_runs(tenant: str | None = None, limit: int = 50) -> pl.DataFrame:
    """Scheduled and manual report runs (``report_runs``) with their delivery outcome, newest first."""
    return _report_runs(database_url(), scope(tenant), limit)


# ------------------------------------------------------------------ rules (rule lab)


def _rule_tenant(definition: dict) -> str | None:
    return (definition.get("target") or {}).get("tenant")


@st.cache_data(ttl=TTL_LIVE, show_spinner=False)
def _rules(url: str, sc, pinned: str | None) -> list[dict]:
    from alerting.config import load_objects

    with connection(url) as conn:
        defs = load_objects(conn, "rule")
    if sc is None:
        return defs
    # a pinned viewer sees its tenant's rules only; an admin looking at one tenant also sees fleet-wide rules
    return [d for d in defs if _rule_tenant(d) in sc or (pinned is None and _rule_tenant(d) is None)]


def rules(tenant: str | None = None) -> list[dict]:
    """Applied rule definitions (``config_objects``) visible in this scope."""
    return _rules(database_url(), scope(tenant), viewer_tenant())


def rule_owner(rule_id: str) -> tuple[bool, str | None]:
    """(exists, target tenant) of an applied rule id, whatever the scope: saving must not
    overwrite another tenant's rule."""
    rows = _rows(database_url(), """select definition -> 'target' ->> 'tenant' as tenant from config_objects
                                    where kind = 'rule' and id = %s""", (rule_id,))
    return (bool(rows), rows[0]["tenant"] if rows else None)


@st.cache_data(ttl=600, show_spinner=False, max_entries=16)
def _backtest(url: str, tenant: str, rule_json: str, start: datetime, end: datetime) -> dict:
    import json

    from alerting.history import run_backtest
    from alerting.rules import load_rules

    rules_ = load_rules({"rules": json.loads(rule_json)})
    with connection(url) as conn:
        return run_backtest(conn, rules_, start, end, tenant=tenant)


def backtest(tenant: str | None, rule_definitions: Sequence[dict], start: datetime, end: datetime) -> dict:
    """``alerting.history.run_backtest`` over one tenant's stored telemetry (cached per rule set and range)."""
    import json

    return _backtest(database_url(), _one_tenant(tenant), json.dumps(list(rule_definitions), sort_keys=True,
                                                                      default=str), start, end)
