"""`pulse bench app --json`: render time of every Streamlit page at fleet scale, in headless Chromium.

The dataset stands for ``devices`` devices × ``metrics`` metrics × ``days`` days of 1-minute
data. It is generated directly in the form the pages read, never as 432M raw rows per metric:

- PostgreSQL (its own database, ``<dev db>_bench_app``): the tenant, sites, devices,
  ``device_state`` (last values, last seen), ``ingest_hours`` and ``lake_exports`` for every
  hour, alerts with their events, report runs, asset check results, quarantine rows, and
  raw 1-minute telemetry of the last 24 h for the first ``raw_devices`` devices (what the
  Device explorer's default view reads);
- the Parquet lake: 1h and 1d rollups of every device and metric for the whole period
  (``rollups/1h|1d/tenant=/date=/``), written with the lake's own writer.

Not generated (and said so in the JSON): raw 1-minute lake files and 1m rollups, which no
page reads at its default view. The lake is reused between runs with the same parameters;
the database part (small) is rebuilt every run so "now"-relative data is fresh.

Each page is timed cold (a freshly started ``streamlit run`` — empty caches, first visit)
and warm (the median of further visits on the same server): from navigation until the
page's own marker is visible and Streamlit's running indicator has cleared.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import psycopg
from psycopg.types.json import Jsonb

TENANT = "bench"
METRICS = ("temp_c", "pressure_bar", "power_kw", "flow_lpm", "vibration_mm_s")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

# page → (url path, text that shows the page's own content has rendered)
PAGES: dict[str, tuple[str, dict]] = {
    "fleet": ("/", {"text": "device(s)"}),
    "device": ("/device", {"text": "points sent"}),
    "health": ("/health", {"text": "Checks failing"}),
    "alerts": ("/alerts", {"role": "heading", "name": "Event timeline"}),
    "sla": ("/sla", {"role": "heading", "name": "Report runs"}),
    "lab": ("/lab", {"role": "button", "name": "Run detector"}),
    "rules": ("/rules", {"role": "button", "name": "Backtest"}),
}


# ------------------------------------------------------------------ dataset


def bench_database_url(base_url: str) -> str:
    head, _, name = base_url.rpartition("/")
    name, _, query = name.partition("?")
    return f"{head}/{name}_bench_app" + (f"?{query}" if query else "")


def _ensure_database(url: str) -> None:
    from pulse import db

    head, _, name = url.rpartition("/")
    name = name.partition("?")[0]
    with psycopg.connect(f"{head}/postgres", autocommit=True) as admin:
        if admin.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is None:
            admin.execute(f'create database "{name}"')
    db.migrate(url)


def _series_values(devices: int, metrics: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(20, 80, size=(devices, metrics))
    amp = rng.uniform(1, 8, size=(devices, metrics))
    return base, amp


def _hourly(base: np.ndarray, amp: np.ndarray, t: datetime, rng) -> np.ndarray:
    phase = 2 * np.pi * (t.hour + t.minute / 60) / 24
    return base + amp * np.sin(phase) + rng.normal(0, 0.5, base.shape)


def generate_lake(lake_dir: Path, *, devices: int, metrics: int, start: datetime, days: int, seed: int = 7) -> dict:
    """1h and 1d rollups for every device and metric of the period (ROLLUP_SCHEMA files)."""
    from assets.rollups import ROLLUP_SCHEMA, rollup_path
    from assets.lake import write_parquet_atomic

    rng = np.random.default_rng(seed)
    base, amp = _series_values(devices, metrics, seed)
    dev = np.repeat(np.array([f"dev-{i:05d}" for i in range(devices)], dtype=object), metrics)
    met = np.tile(np.array(METRICS[:metrics], dtype=object), devices)
    n = devices * metrics
    cols = {"tenant_id": pa.array([TENANT] * n, pa.string()), "device_id": pa.array(dev, pa.string()),
            "metric": pa.array(met, pa.string())}

    def table(bucket: datetime, mean: np.ndarray, spread: np.ndarray, count: int) -> pa.Table:
        mean = mean.ravel()
        spread = spread.ravel()
        return pa.table({**cols,
                         "bucket": pa.array(np.full(n, int(bucket.timestamp() * 1e6), dtype=np.int64)).cast(
                             pa.timestamp("us", tz="UTC")),
                         "count": pa.array(np.full(n, count, dtype=np.int64)),
                         "min": pa.array(np.round(mean - spread, 3)), "max": pa.array(np.round(mean + spread, 3)),
                         "mean": pa.array(np.round(mean, 3)), "p95": pa.array(np.round(mean + 0.8 * spread, 3)),
                         "last": pa.array(np.round(mean + rng.normal(0, 0.3, n), 3))}, schema=ROLLUP_SCHEMA)

    rows = {"1h": 0, "1d": 0}
    files = {"1h": 0, "1d": 0}
    for d in range(days):
        day = start + timedelta(days=d)
        day_means = []
        for h in range(24):
            hour = day + timedelta(hours=h)
            mean = _hourly(base, amp, hour, rng)
            day_means.append(mean)
            write_parquet_atomic(table(hour, mean, np.abs(rng.normal(1.5, 0.5, mean.shape)), 60),
                                 rollup_path(lake_dir, "1h", TENANT, hour))
            rows["1h"] += n
            files["1h"] += 1
        mean = np.mean(day_means, axis=0)
        write_parquet_atomic(table(day, mean, amp + 2.0, 1440), rollup_path(lake_dir, "1d", TENANT, day))
        rows["1d"] += n
        files["1d"] += 1
    return {"rollup_1h_rows": rows["1h"], "rollup_1d_rows": rows["1d"], "rollup_files": files["1h"] + files["1d"]}


def _copy(conn, sql: str, rows) -> int:
    n = 0
    with conn.cursor() as cur, cur.copy(sql) as cp:
        for r in rows:
            cp.write_row(r)
            n += 1
    return n


def generate_database(url: str, *, devices: int, metrics: int, start: datetime, end: datetime,
                      raw_devices: int = 20, sites: int = 20, seed: int = 7) -> dict:
    """Rebuild the bench tenant in the bench database (everything the pages read from PostgreSQL)."""
    rng = np.random.default_rng(seed)
    base, amp = _series_values(devices, metrics, seed)
    now = datetime.now(UTC)
    names = METRICS[:metrics]
    out: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        conn.execute("delete from tenants where tenant_id = %s", (TENANT,))  # cascades to sites/devices/state
        for table in ("telemetry", "ingest_hours", "lake_exports", "alerts", "report_runs", "quarantine",
                      "silences"):
            conn.execute(f"delete from {table} where tenant_id = %s", (TENANT,))
        conn.execute("delete from asset_check_results where run_id = 'bench-app'")
        conn.execute("delete from config_objects where kind = 'rule' and id like 'bench-%%'")
        conn.execute("insert into tenants (tenant_id, name) values (%s, 'Bench fleet')", (TENANT,))
        _copy(conn, "copy sites (tenant_id, site_id, name, latitude, longitude) from stdin",
              ((TENANT, f"site-{s:02d}", f"Plant {s}", float(35 + rng.uniform(0, 25)), float(-10 + rng.uniform(0, 40)))
               for s in range(sites)))
        types = ("pump", "chiller", "meter", "compressor")
        out["devices"] = _copy(
            conn, "copy devices (tenant_id, device_id, site_id, device_type, name, tags, token_created_at) from stdin",
            ((TENANT, f"dev-{i:05d}", f"site-{i % sites:02d}", types[i % 4], f"Device {i}",
              json.dumps({"type": types[i % 4], "fw": f"1.{i % 5}.0"}), now - timedelta(days=40)) for i in range(devices)))
        # 1% never seen, 3% offline (last seen hours ago), the rest reporting
        last = _hourly(base, amp, now, rng)
        state = []
        for i in range(devices):
            if i % 100 == 99:
                continue
            seen = now - (timedelta(hours=float(rng.uniform(1, 48))) if i % 100 >= 96 else timedelta(seconds=float(rng.uniform(0, 90))))
            values = {m: round(float(last[i, j]), 3) for j, m in enumerate(names)}
            state.append((TENANT, f"dev-{i:05d}", seen, seen, json.dumps(values), int((end - start).days * 1440 * metrics)))
        out["device_state"] = _copy(
            conn, "copy device_state (tenant_id, device_id, last_seen, last_received_at, last_values, rows) from stdin",
            state)
        # raw 1-minute telemetry of the last 24 h for the explorer's first devices
        t0 = now.replace(second=0, microsecond=0) - timedelta(hours=24)
        minutes = np.arange(24 * 60)

        def raw():
            for i in range(min(raw_devices, devices)):
                for j, m in enumerate(names):
                    vals = base[i, j] + amp[i, j] * np.sin(2 * np.pi * ((t0.hour * 60 + t0.minute + minutes) / 1440))
                    vals = vals + rng.normal(0, 0.5, len(minutes))
                    for k in minutes:
                        yield (t0 + timedelta(minutes=int(k)), TENANT, f"dev-{i:05d}", m, round(float(vals[k]), 3))

        out["telemetry_rows"] = _copy(conn, "copy telemetry (time, tenant_id, device_id, metric, value) from stdin",
                                      raw())
        per_hour = devices * metrics * 60
        hours = [start + timedelta(hours=h) for h in range(int((end - start).total_seconds() // 3600))]
        hours.append(now.replace(minute=0, second=0, microsecond=0))
        _copy(conn, "copy ingest_hours (tenant_id, hour, rows, last_ingested_at) from stdin",
              ((TENANT, h, per_hour, min(h + timedelta(minutes=61), now)) for h in sorted(set(hours))))
        _copy(conn, "copy lake_exports (tenant_id, hour, rows, db_rows, ledger_rows, path, bytes, exported_at) from stdin",
              ((TENANT, h, per_hour, per_hour, per_hour, f"telemetry/tenant={TENANT}/date={h:%Y-%m-%d}/hour={h:%H}.parquet",
                per_hour * 6, h + timedelta(minutes=65)) for h in hours[:-3]))
        # alerts: 600 over the period, the newest 150 still open, each with its events
        alerts, events = [], []
        rules = ("bench-high-temp", "bench-pressure-drop", "bench-absence", "bench-vibration")
        sev = ("warning", "critical", "info")
        for a in range(600):
            i = int(rng.integers(0, devices))
            started = end - timedelta(minutes=float(rng.uniform(5, (end - start).total_seconds() / 60)))
            if a >= 450:
                started = now - timedelta(minutes=float(rng.uniform(5, 600)))
            state_ = "firing" if a >= 450 else "resolved"
            aid = f"{TENANT}/{rules[a % 4]}/dev-{i:05d}@{a}"
            resolved = None if state_ != "resolved" else started + timedelta(minutes=float(rng.uniform(5, 120)))
            alerts.append((aid, f"{TENANT}/{rules[a % 4]}/dev-{i:05d}#{a}", TENANT, rules[a % 4], f"dev-{i:05d}",
                           f"dev-{i:05d}", f"site-{i % sites:02d}", sev[a % 3], state_, f"{rules[a % 4]} on dev-{i:05d}",
                           99.0, started, resolved or started + timedelta(minutes=30), resolved,
                           "engine" if resolved else None))
            events.append((aid, started, None, "pending", "transition", "engine", "breach", 99.0))
            events.append((aid, started + timedelta(minutes=2), "pending", "firing", "transition", "engine", "for elapsed", 99.0))
            if resolved:
                events.append((aid, resolved, "firing", "resolved", "transition", "engine", "clear", 50.0))
        out["alerts"] = _copy(conn, """copy alerts (alert_id, fingerprint, tenant_id, rule_id, subject, device_id, site_id,
                                       severity, state, summary, value, started_at, last_seen, resolved_at, resolved_by)
                                       from stdin""", alerts)
        out["alert_events"] = _copy(conn, """copy alert_events (alert_id, at, from_state, to_state, action, actor, reason,
                                              value) from stdin""", events)
        runs = []
        for d in range(1, min((end - start).days, 30)):
            day = (now - timedelta(days=d)).date()
            ok = d % 9 != 0
            runs.append((TENANT, day.isoformat(), datetime(day.year, day.month, day.day, tzinfo=UTC),
                         datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1), ["html", "json"],
                         f".pulse/reports/{TENANT}", now - timedelta(days=d - 1, hours=23), now - timedelta(days=d - 1, hours=23),
                         "succeeded" if ok else "delivery_failed",
                         json.dumps([{"kind": "email", "target": "ops-mail", "ok": ok,
                                      "error": None if ok else "SMTP 421 try again later"}]), "dagster:bench"))
        out["report_runs"] = _copy(conn, """copy report_runs (tenant_id, period, period_start, period_end, formats, path,
                                           started_at, finished_at, status, delivered_to, triggered_by) from stdin""", runs)
        conn.execute("""insert into asset_check_results (asset_key, check_name, partition_key, passed, severity, metadata, run_id)
                        select 'rollups_1h', 'row_count', to_char(h, 'YYYY-MM-DD-HH24:MI'), true, 'ERROR', %s, 'bench-app'
                        from generate_series(%s::timestamptz, %s::timestamptz, interval '1 hour') h""",
                     (Jsonb({"rows": per_hour}), end - timedelta(hours=48), end))
        conn.execute("""insert into quarantine (transport, tenant_id, device_id, reason, detail, payload)
                        select 'mqtt', %s, 'ghost-' || g, 'unknown_device', 'not registered', '{"v":1}'::bytea
                        from generate_series(1, 50) g""", (TENANT,))
        conn.commit()
        conn.execute("analyze")
    return out


def build_dataset(base_url: str, data_dir: Path, *, devices: int, days: int, metrics: int, raw_devices: int,
                  reuse: bool = True) -> tuple[str, Path, dict]:
    url = bench_database_url(base_url)
    _ensure_database(url)
    lake = data_dir / "lake"
    marker = data_dir / "dataset.json"
    params = {"devices": devices, "days": days, "metrics": metrics}
    info = json.loads(marker.read_text()) if marker.exists() else {}
    started = time.perf_counter()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    if reuse and info.get("params") == params and lake.exists():
        lake_info, reused = info["lake"], True
        start = datetime.fromisoformat(info["start"])
        end = start + timedelta(days=days)
    else:
        shutil.rmtree(lake, ignore_errors=True)
        start = (end - timedelta(days=days)).replace(hour=0)
        lake_info = generate_lake(lake, devices=devices, metrics=metrics, start=start, days=days)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"params": params, "lake": lake_info, "start": start.isoformat()}))
        reused = False
    lake_s = time.perf_counter() - started
    t1 = time.perf_counter()
    db_info = generate_database(url, devices=devices, metrics=metrics, start=start, end=max(end, start),
                                raw_devices=raw_devices)
    represented = devices * metrics * days * 1440
    dataset = {
        "devices": devices, "metrics": metrics, "days": days, "interval_s": 60,
        "raw_rows_represented": represented,
        "lake_reused": reused, "lake_generate_s": round(lake_s, 1), "db_generate_s": round(time.perf_counter() - t1, 1),
        **lake_info, **{f"db_{k}": v for k, v in db_info.items()},
        "lake_bytes": sum(p.stat().st_size for p in lake.rglob("*.parquet")),
        "not_generated": ("raw 1-minute lake files and 1m rollups (no page reads them at its default view); raw "
                          f"1-minute telemetry in PostgreSQL only for the last 24 h of {min(raw_devices, devices)} devices"),
    }
    return url, lake, dataset


# ------------------------------------------------------------------ server + browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, url: str, lake: Path, home: Path):
        from app.cli import streamlit_command

        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        env.update(PULSE_DATABASE_URL=url, PULSE_LAKE_DIR=str(lake), PULSE_HOME=str(home))
        if os.environ.get("PULSE_NAB_DIR"):
            env["PULSE_NAB_DIR"] = os.environ["PULSE_NAB_DIR"]
        home.mkdir(parents=True, exist_ok=True)
        self.log = (home / "streamlit.log").open("wb")
        self.proc = subprocess.Popen(streamlit_command(self.port), cwd=Path(__file__).resolve().parent.parent,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 90) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("streamlit exited during start-up")
            try:
                if httpx.get(f"{self.base}/_stcore/health", timeout=2).text == "ok":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("streamlit did not become healthy")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _load(page, url: str, marker: dict, timeout_ms: float) -> float:
    from playwright.sync_api import expect

    started = time.perf_counter()
    page.goto(url)
    locator = (page.get_by_text(marker["text"]).first if "text" in marker
               else page.get_by_role(marker["role"], name=marker["name"], exact=True).first)
    expect(locator).to_be_visible(timeout=timeout_ms)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=timeout_ms)
    elapsed = time.perf_counter() - started
    expect(page.get_by_test_id("stException")).to_have_count(0, timeout=1000)
    return elapsed


def measure_pages(url: str, lake: Path, home: Path, *, warm_runs: int = 5, timeout_s: float = 60) -> dict:
    from playwright.sync_api import sync_playwright

    results: dict[str, dict] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for name, (path, marker) in PAGES.items():
                server = _Server(url, lake, home / name)
                try:
                    server.wait()
                    context = browser.new_context(viewport={"width": 1400, "height": 1000})
                    page = context.new_page()
                    cold = _load(page, server.base + path, marker, timeout_s * 1000)
                    warm = [_load(page, server.base + path, marker, timeout_s * 1000) for _ in range(warm_runs)]
                    context.close()
                    results[name] = {"cold_s": round(cold, 3), "warm_s": round(statistics.median(warm), 3),
                                     "warm_samples_s": [round(w, 3) for w in warm]}
                except Exception as exc:  # noqa: BLE001 - reported per page, the run goes on
                    results[name] = {"cold_s": None, "warm_s": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                finally:
                    server.stop()
        finally:
            browser.close()
    return results


def run_app_bench(*, devices: int = 10_000, days: int = 30, metrics: int = 3, raw_devices: int = 20,
                  reuse: bool = True, warm_runs: int = 5, data_dir: Path | None = None) -> dict:
    from pulse import db
    from pulse.errors import UserError
    from pulse.settings import get_settings

    if not Path(CHROMIUM).exists():
        raise UserError("Debian chromium is not installed (run scripts/browser.sh)")
    if not 1 <= metrics <= len(METRICS):
        raise UserError(f"--metrics must be between 1 and {len(METRICS)}")
    data_dir = Path(data_dir or get_settings().home / "bench-app")
    started = time.perf_counter()
    url, lake, dataset = build_dataset(db.database_url(), data_dir, devices=devices, days=days, metrics=metrics,
                                       raw_devices=raw_devices, reuse=reuse)
    load_before = os.getloadavg()[0]
    pages = measure_pages(url, lake, data_dir / "servers", warm_runs=warm_runs)
    colds = [p["cold_s"] for p in pages.values() if p["cold_s"] is not None]
    warms = [p["warm_s"] for p in pages.values() if p["warm_s"] is not None]
    max_cold = max(colds) if colds else None
    max_warm = max(warms) if warms else None
    return {
        "pages": len(pages), **pages,
        "max_warm_s": max_warm, "max_cold_s": max_cold,
        "targets": {"warm_s": 2.0, "cold_s": 5.0},
        "meets_targets": (len(colds) == len(pages) and max_warm is not None and max_warm <= 2.0
                          and max_cold is not None and max_cold <= 5.0),
        "dataset": dataset,
        "method": ("cold: first visit on a freshly started `streamlit run` (empty caches); warm: median of "
                   f"{warm_runs} further visits; both from navigation until the page's marker is visible and "
                   "Streamlit's running indicator is gone, in headless Debian Chromium"),
        "total_s": round(time.perf_counter() - started, 1),
        # the machine is shared: 1-minute load average before and after the page timings
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count(),
    }
