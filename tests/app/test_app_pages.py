"""AppTest over every page of the Streamlit app against a real (TimescaleDB) test database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app import queries
from tests.app.app_fixtures import TENANT_A, TENANT_B, seed

ENTRY = str(Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py")


@pytest.fixture
def app_env(pulse_env, monkeypatch):
    st.cache_data.clear()  # caches are process-wide; every test starts from its own database state
    monkeypatch.setenv("PULSE_LAKE_DIR", str(pulse_env / "lake"))
    yield pulse_env
    st.cache_data.clear()


@pytest.fixture
def seeded(app_env, pg_url, monkeypatch):
    monkeypatch.setenv("PULSE_DATABASE_URL", pg_url)
    return seed(pg_url, app_env / "lake")


def run(page: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [e.value for e in at.error] + [t.value for t in at.title] + [s.value for s in at.subheader]
    return "\n".join(str(p) for p in parts)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_fleet_overview_kpis_map_table_and_filters(seeded):
    at = run()
    assert at.title[0].value == "Fleet overview"
    assert metric(at, "Devices online") == "6"  # 8 devices, one per tenant never reported
    assert metric(at, "Never seen") == "2"
    assert metric(at, "critical") == "1" and metric(at, "warning") == "1"
    assert "rows/s" in metric(at, "Ingest rate")
    assert at.get("deck_gl_json_chart"), "sites with coordinates are drawn on a map"
    table = at.dataframe[0].value
    assert set(table["device_id"]) == set(seeded.a_devices + seeded.b_devices)
    assert at.get("download_button"), "the filtered fleet is downloadable as CSV"

    at.multiselect(key="fleet_status").set_value(["never seen"]).run()
    assert len(at.dataframe[0].value) == 2
    at.multiselect(key="fleet_status").set_value([]).run()
    at.multiselect(key="fleet_tags").set_value(["type=pump"]).run()
    assert set(at.dataframe[0].value["device_type"]) == {"pump"}
    at.text_input(key="fleet_search").set_value("chiller").run()
    assert "No device matches these filters." in texts(at)


def test_fleet_csv_export_matches_filter(seeded):
    frame = queries.devices(None, tags={"type": "meter"})
    csv = frame.write_csv()
    assert csv.splitlines()[0].startswith("tenant_id,device_id")
    assert len(csv.splitlines()) == 1 + frame.height == 3


def test_device_explorer_raw_and_rollup(seeded):
    device = seeded.a_devices[1]
    at = run("app_pages/device.py", app_tenant=TENANT_A)
    at.selectbox(key="device_id").set_value(device).run()
    assert not at.exception
    assert "grain **raw**" in texts(at)
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart") or "points sent" in texts(at)
    assert "1 alert interval(s) shaded" in texts(at)
    assert metric(at, "Token age") != "no token"
    at.selectbox(key="device_grain").set_value("1h").run()
    assert "grain **1h**" in texts(at)
    # last 1 hour is raw (12 points per metric at 5-minute intervals)
    at.selectbox(key="device_range").set_value("Last 1 hour")
    at.selectbox(key="device_grain").set_value("auto").run()
    assert "grain **raw**" in texts(at)


def test_series_grain_and_point_budget(seeded):
    device = seeded.a_devices[1]
    end = datetime.now(UTC)
    raw, grain = queries.series(TENANT_A, device, ["voltage_v"], end - timedelta(days=1), end, "auto", max_points=100)
    assert grain == "1h"  # 288 raw points > 100: the finest grain within budget
    assert 0 < raw.height <= 100
    lake_hours, _ = queries.series(TENANT_A, device, ["voltage_v"], end - timedelta(hours=5), end, "1h")
    assert lake_hours.height >= 4
    assert set(lake_hours["source"]) == {"lake", "live"}  # exported hours from Parquet, the rest from PG
    # the rollup (lake files for exported hours + live tail) agrees with a raw average of the same hour
    import psycopg

    hour = lake_hours["time"][1]
    with psycopg.connect(seeded.url) as conn:
        avg = conn.execute("""select avg(value) from telemetry where tenant_id = %s and device_id = %s
                              and metric = 'voltage_v' and time >= %s and time < %s""",
                           (TENANT_A, device, hour, hour + timedelta(hours=1))).fetchone()[0]
    assert lake_hours["value"][1] == pytest.approx(avg)
    assert queries.pick_grain(3600, 60) == "raw" and queries.pick_grain(86400 * 30, 10**6) == "1h"
    assert queries.pick_grain(86400 * 3650, 10**8) == "1d"


def test_downsample_keeps_extremes():
    import polars as pl

    n = 10_000
    frame = pl.DataFrame({"metric": ["m"] * n, "time": list(range(n)), "value": [0.0] * n})
    frame = frame.with_columns(pl.when(pl.col("time") == 4321).then(99.0).otherwise(pl.col("value")).alias("value"))
    out = queries.downsample(frame, 500)
    assert out.height <= 500
    assert out["value"].max() == 99.0


def test_data_health(seeded):
    at = run("app_pages/health.py")
    body = texts(at)
    assert "Data health" in body and "Nothing exported" not in body
    assert metric(at, "Checks failing") == "1"
    assert any("unknown_device" in e.label for e in at.expander)
    lake = queries.lake_freshness()
    assert set(lake["tenant_id"]) == {TENANT_A, TENANT_B} and lake["hours_exported"].min() == 2


def test_alerts_list_timeline_and_read_only(seeded):
    at = run("app_pages/alerts.py")
    table = at.dataframe[0].value
    assert set(table["alert_id"]) == {seeded.a_alert, seeded.b_alert}
    at.selectbox(key="alerts_selected").set_value(seeded.a_alert).run()
    events = at.dataframe[1].value
    assert list(events["to_state"]) == ["pending", "firing"]
    at.multiselect(key="alerts_severity").set_value(["critical"]).run()
    assert list(at.dataframe[0].value["alert_id"]) == [seeded.a_alert]


def test_detector_lab_nab_file(seeded):
    if queries.nab_dir() is None:
        pytest.skip("NAB corpus not found (set PULSE_NAB_DIR)")
    at = run("app_pages/lab.py")
    at.selectbox(key="lab_file").set_value("artificialWithAnomaly/art_daily_jumpsup.csv")
    at.selectbox(key="lab_detector").set_value("robust_z").run()
    assert at.number_input(key="lab_param_robust_z_window").value == 100
    at.button(key="lab_run").click().run()
    assert not at.exception
    assert "NAB score of this file" in texts(at)
    score = float(metric(at, "standard"))
    assert -100 <= score <= 100
    assert int(metric(at, "Flagged points")) >= 1


def test_detector_lab_fleet_series(seeded):
    at = run("app_pages/lab.py", app_tenant=TENANT_B)
    at.radio(key="lab_source").set_value("Fleet series").run()
    at.selectbox(key="lab_detector").set_value("robust_z").run()
    at.button(key="lab_run").click().run()
    assert not at.exception
    assert "Flagged points" in [m.label for m in at.metric]


def test_tenant_viewer_sees_only_its_tenant(seeded, monkeypatch):
    monkeypatch.setenv("PULSE_APP_TENANT", TENANT_A)
    at = run()
    assert set(at.dataframe[0].value["tenant_id"]) == {TENANT_A}
    assert metric(at, "Devices online") == "3"
    assert "warning" not in [m.label for m in at.metric]  # tenant B's open alert
    assert not any(s.key == "app_tenant" for s in at.selectbox), "a pinned viewer gets no tenant switcher"

    at.switch_page("app_pages/alerts.py").run()
    assert set(at.dataframe[0].value["alert_id"]) == {seeded.a_alert}
    at.switch_page("app_pages/health.py").run()
    assert not any("unsupported_version" in e.label for e in at.expander)  # tenant B's quarantine
    checks = next(d.value for d in at.dataframe if "check_name" in d.value.columns)
    assert "metadata" not in checks.columns  # platform-wide check metadata is hidden from tenant viewers
    at.switch_page("app_pages/device.py").run()
    assert set(at.selectbox(key="device_id").options) == set(seeded.a_devices)

    # enforced in queries.py, whatever a page asks for
    with pytest.raises(queries.TenantAccessDenied):
        queries.devices(TENANT_B)
    with pytest.raises(queries.TenantAccessDenied):
        queries.series(TENANT_B, seeded.b_devices[1], ["temp_c"], datetime.now(UTC) - timedelta(hours=1),
                       datetime.now(UTC))
    assert queries.alert_events(None, seeded.b_alert).is_empty()
    assert not queries.alert_visible(None, seeded.b_alert)
    assert queries.quarantine_counts() == {"unknown_device": 1}
    assert [t["tenant_id"] for t in queries.tenants()] == [TENANT_A]
    assert queries.check_results()["metadata"].null_count() == queries.check_results().height


def test_empty_store_friendly_messages(app_env, pg_url, monkeypatch):
    monkeypatch.setenv("PULSE_DATABASE_URL", pg_url)
    at = run()
    assert "No devices yet" in texts(at)
    for page in ("app_pages/device.py", "app_pages/health.py", "app_pages/alerts.py"):
        at.switch_page(page).run()
        assert not at.exception and not at.error, page
    assert "No alerts match these filters." in texts(at)
    for page, message in (("app_pages/sla.py", "nothing to report on"), ("app_pages/rules.py", "No tenants yet")):
        at.switch_page(page).run()
        assert not at.exception and not at.error and message in texts(at), page


def test_unreachable_store_shows_message_not_traceback(app_env, monkeypatch):
    monkeypatch.setenv("PULSE_DATABASE_URL", "postgresql://nobody:x@127.0.0.1:1/none")
    at = run()
    assert at.error and "unreachable" in at.error[0].value
    for page in ("app_pages/alerts.py", "app_pages/sla.py", "app_pages/rules.py"):
        at.switch_page(page).run()
        assert not at.exception and "unreachable" in at.error[0].value, page


def test_detector_lab_unlabelled_nab_file(seeded):
    if queries.nab_dir() is None:
        pytest.skip("NAB corpus not found (set PULSE_NAB_DIR)")
    at = run("app_pages/lab.py")
    at.selectbox(key="lab_file").set_value("artificialNoAnomaly/art_daily_no_noise.csv")
    at.selectbox(key="lab_detector").set_value("robust_z").run()
    at.slider(key="lab_threshold").set_value(0.5)
    at.button(key="lab_run").click().run()
    assert not at.exception
    assert "no labelled anomalies" in texts(at) and "NAB score of this file" not in texts(at)
    assert "Flagged points" in [m.label for m in at.metric]


def test_alert_actions_through_alerting_api(seeded):
    from app import actions

    if actions.load_api() is None:
        pytest.skip("alerting.api is not built in this tree")
    at = run("app_pages/alerts.py")
    at.selectbox(key="alerts_selected").set_value(seeded.a_alert).run()
    at.button(key="alerts_ack").click().run()
    assert "Enter your name" in "\n".join(w.value for w in at.warning)  # no anonymous actions
    at.text_input(key="alerts_actor").set_value("olga")
    at.text_area(key="alerts_note").set_value("on it")
    at.button(key="alerts_ack").click().run()
    assert not at.exception and any("ack recorded" in s.value for s in at.success)
    at.selectbox(key="alerts_selected").set_value(seeded.a_alert).run()
    events = next(d.value for d in at.dataframe if "action" in d.value.columns)
    assert events["action"].iloc[-1] == "ack" and events["actor"].iloc[-1] == "olga"
    # acknowledging twice is the API's error, shown as a message
    at.button(key="alerts_ack").click().run()
    assert any("already acknowledged" in e.value for e in at.error)
    at.selectbox(key="alerts_resolution").set_value("false_alarm")
    at.button(key="alerts_resolve").click().run()
    assert any("resolve recorded" in s.value for s in at.success)
    assert seeded.a_alert not in set(at.dataframe[0].value["alert_id"])  # default filter: open alerts


def test_alerts_page_read_only_without_api(seeded, monkeypatch):
    from app import actions

    monkeypatch.setattr(actions, "load_api", lambda: None)
    at = run("app_pages/alerts.py")
    assert "Read-only" in texts(at)
    assert not any(b.key == "alerts_ack" for b in at.button)
    with pytest.raises(actions.ActionUnavailable):
        actions.perform("ack", seeded.a_alert, "olga")


def test_pulse_app_command_is_registered():
    import typer
    from typer.testing import CliRunner

    from app import cli

    app = typer.Typer()
    cli.register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer from flattening `app`
        pass

    result = CliRunner().invoke(app, ["app", "--help"])
    assert result.exit_code == 0 and "--port" in result.output
    cmd = cli.streamlit_command(8765)
    assert cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert Path(cmd[cmd.index("run") + 1]).name == "streamlit_app.py"


def test_auto_grain_uses_rollups_when_raw_rows_do_not_reach_back(seeded):
    """A range older than the hot store's rows reads the lake rollups, not the few raw rows."""
    device = seeded.a_devices[1]
    end = datetime.now(UTC)
    frame, grain = queries.series(TENANT_A, device, ["voltage_v"], end - timedelta(days=30), end)
    assert grain == "1h"  # 288 raw points fit in 2,000, but they cover 1 of the 30 days
    assert 0 < frame.height <= queries.MAX_POINTS
    short, grain = queries.series(TENANT_A, device, ["voltage_v"], end - timedelta(hours=6), end)
    assert grain == "raw" and short.height >= 60
