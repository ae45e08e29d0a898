"""AppTest for the device explorer's overlays (anomaly scores, silences, health timeline), the
alerts page's notifications / delivery log / re-drive and the data health page's delivery
metrics — against the real test database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from app import queries
from tests.app.app_fixtures import TENANT_A, TENANT_B
from tests.app.test_app_pages import app_env, metric, run, seeded, texts  # noqa: F401  (fixtures)


def _chart_specs(at) -> str:
    import json

    charts = list(at.get("arrow_vega_lite_chart")) + list(at.get("vega_lite_chart"))
    return "\n".join(json.dumps(c.proto.spec if hasattr(c.proto, "spec") else str(c.proto)) for c in charts)


def _chart_frames(at) -> list:
    """The data frames (pandas) of every Vega-Lite chart on the page."""
    import pyarrow as pa

    charts = list(at.get("arrow_vega_lite_chart")) + list(at.get("vega_lite_chart"))
    return [pa.ipc.open_stream(ds.data.data).read_pandas() for c in charts for ds in c.proto.datasets]


def _window(hours: float = 24):
    end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end - timedelta(hours=hours), end


# ------------------------------------------------------------------ device explorer


def test_device_overlays_scores_silence_and_health(seeded):
    at = run("app_pages/device.py", app_tenant=TENANT_A)
    assert at.selectbox(key="device_id").value == seeded.a_shown
    body = texts(at)
    assert "anomaly scores (" in body and "1 silence span(s) marked" in body
    spec = _chart_specs(at)
    assert "anomaly score" in spec and "crimson" in spec and "slategray" in spec
    frames = _chart_frames(at)
    flagged = [f for f in frames if "score" in f.columns and (f["score"] >= queries.score_threshold()).all()]
    assert flagged and len(flagged[0]) == len(at.multiselect(key="device_metrics").value)  # one peak per metric
    assert any("status" in f.columns and set(f["status"]) == {"online", "offline"} for f in frames)
    # the series and the score overlay stay within the point budget per metric
    start, end = _window()
    scores = queries.anomaly_scores(TENANT_A, seeded.a_shown, at.multiselect(key="device_metrics").value, start, end)
    assert not scores.is_empty() and scores.group_by("metric").len()["len"].max() <= queries.MAX_POINTS
    assert scores["score"].max() == pytest.approx(0.95)
    small = queries.anomaly_scores(TENANT_A, seeded.a_shown, ["temp_c", "power_kw"], start, end, max_points=20)
    assert small.group_by("metric").len()["len"].max() <= 20 and small["score"].max() == pytest.approx(0.95)
    # the silence band: matched through alerting.silences.matches, shown with its matchers
    table = next(d.value for d in at.dataframe if "silence_id" in d.value.columns)
    assert list(table["created_by"]) == ["olga"] and seeded.a_shown in table["matchers"].iloc[0]
    # health timeline: the hour without readings is one offline interval
    assert metric(at, "Offline intervals") == "1"
    assert "offline after 3 ×" in texts(at)
    health = queries.device_health(TENANT_A, seeded.a_shown, start, end)["intervals"]
    off = health.filter(health["status"] == "offline").row(0, named=True)
    assert 3600 <= off["duration_s"] <= 3600 + 2 * 300
    assert set(health["status"]) == {"online", "offline"}
    # the database session may name its zone Etc/UTC: still one comparable zone for polars
    from zoneinfo import ZoneInfo

    etc = ZoneInfo("Etc/UTC")
    same = queries.device_health(TENANT_A, seeded.a_shown, start.astimezone(etc), end.astimezone(etc))["intervals"]
    assert same.height == health.height


def test_device_without_scores_or_silences(seeded):
    other = next(d for d in seeded.a_devices[1:] if d != seeded.a_shown)
    at = run("app_pages/device.py", app_tenant=TENANT_A)
    at.selectbox(key="device_id").set_value(other).run()
    assert not at.exception
    body = texts(at)
    assert "no anomaly scores for these metrics" in body and "0 silence span(s) marked" in body
    assert "anomaly score" not in _chart_specs(at)
    assert not any("score" in f.columns for f in _chart_frames(at))
    assert metric(at, "Offline intervals") == "0"
    # a device that never reported: a friendly line instead of a timeline
    at.selectbox(key="device_id").set_value(seeded.a_devices[0]).run()
    assert not at.exception and "no readings in the hot store" in texts(at)


def test_device_silences_use_alerting_matchers(seeded):
    from alerting import silences

    start, end = _window()
    now = datetime.now(UTC)
    with psycopg.connect(seeded.url) as conn:
        # a rule silence on this device (alerts page action), one on another device, a weekly window
        silences.add_silence(conn, matchers={"tenant_id": TENANT_A, "rule_id": "r1", "device_id": seeded.a_shown},
                             starts_at=now - timedelta(hours=2), ends_at=now - timedelta(hours=1), created_by="ann")
        silences.add_silence(conn, matchers={"tenant_id": TENANT_A, "device_id": "~nope-.*"},
                             starts_at=now - timedelta(hours=2), ends_at=now, created_by="ann")
        silences.add_silence(conn, matchers={"tenant_id": TENANT_A, "device_id": [seeded.a_shown, "x"]},
                             starts_at=now - timedelta(days=3), ends_at=now + timedelta(days=3), created_by="ann",
                             recurrence="0 */6 * * *", duration_s=600)
    spans = queries.device_silences(TENANT_A, seeded.a_shown, start, end)
    assert "nope" not in "".join(spans["matchers"])
    recurring = spans.filter(spans["matchers"].str.contains('"x"'))
    assert 3 <= recurring.height <= 5  # every 6 h for 10 minutes
    assert all((t - f).total_seconds() <= 600 for f, t in zip(recurring["from"], recurring["to"]))
    assert spans.filter(spans["created_by"] == "ann").height == recurring.height + 1


# ------------------------------------------------------------------ alerts: notifications + re-drive


def test_alert_timeline_shows_deliveries(seeded):
    at = run("app_pages/alerts.py")
    at.selectbox(key="alerts_selected").set_value(seeded.a_alert).run()
    events = at.dataframe[1].value
    assert list(events["to_state"]) == ["pending", "firing"]
    notified = next(d.value for d in at.dataframe if "target" in d.value.columns and "attempts" in d.value.columns)
    assert set(notified["channel_id"]) == {"slack-ops", "pagerduty"}
    dead = notified[notified["status"] == "dead"].iloc[0]
    assert dead["attempts"] == 8 and "HTTP 503" in dead["last_error"] and dead["target"] == "route default"
    timeline = next(f for f in _chart_frames(at) if "lane" in f.columns)
    assert {"transition", "notify → slack-ops", "notify → pagerduty"} <= set(timeline["lane"])
    assert set(timeline[timeline["lane"] == "notify → pagerduty"]["status"]) == {"dead"}
    log = next(d.value for d in at.dataframe if "alert_id" in d.value.columns and "last_error" in d.value.columns)
    assert set(log["status"]) <= {"failed", "dead"} and set(log["delivery_id"]) == {seeded.a_deliveries[1],
                                                                                     seeded.b_deliveries[0]}


def test_redrive_requeues_in_the_database(seeded):
    from app import actions

    if actions.load_api() is None:
        pytest.skip("alerting.api is not built in this tree")
    dead = seeded.a_deliveries[1]
    at = run("app_pages/alerts.py")
    at.selectbox(key="alerts_redrive_id").set_value(dead)
    at.button(key="alerts_redrive").click().run()
    assert any("Enter your name" in w.value for w in at.warning)
    at.text_input(key="alerts_actor").set_value("olga")
    at.selectbox(key="alerts_redrive_id").set_value(dead)
    at.button(key="alerts_redrive").click().run()
    assert not at.exception and any(f"delivery {dead} re-queued by olga" in s.value for s in at.success)
    with psycopg.connect(seeded.url) as conn:
        status, attempts = conn.execute("select status, attempts from deliveries where delivery_id = %s",
                                        (dead,)).fetchone()
        history = conn.execute("select count(*) from delivery_attempts where delivery_id = %s", (dead,)).fetchone()[0]
        note = conn.execute("""select actor, reason from alert_events where alert_id = %s and action = 'comment'""",
                            (seeded.a_alert,)).fetchall()
    assert (status, attempts, history) == ("pending", 0, 8)  # fresh budget, history kept
    assert note == [("olga", f"re-drove delivery {dead} (pagerduty, was dead)")]
    # the same re-drive again is a message, not a traceback
    from pulse.errors import UserError

    with pytest.raises(UserError, match="is pending; only dead or failed"):
        actions.redrive(dead, "olga")
    with pytest.raises(UserError, match="no delivery with id"):
        actions.redrive(10**9, "olga")


# ------------------------------------------------------------------ data health: delivery metrics


def test_health_page_delivery_metrics(seeded):
    at = run("app_pages/health.py")
    assert metric(at, "Deliveries") == "4" and metric(at, "Delivered") == "2"
    assert metric(at, "Delivery failure rate") == "50.0 %"
    assert metric(at, "Attempt failure rate") == f"{100 * 10 / 12:.1f} %"
    assert "Rows, last 48 h" in [m.label for m in at.metric]  # ingest metrics stay
    assert any("unknown_device" in e.label for e in at.expander)
    m = queries.delivery_metrics(None, 24)
    assert m["by_channel_status"].height == 4 and m["failing"] == 2


def test_empty_delivery_and_overlay_states(app_env, pg_url, monkeypatch):
    monkeypatch.setenv("PULSE_DATABASE_URL", pg_url)
    at = run("app_pages/health.py")
    assert not at.exception and "No notifications in the last 24 hours." in texts(at)
    assert metric(at, "Delivery failure rate") == "—"
    at.switch_page("app_pages/alerts.py").run()
    assert not at.exception and "No notifications delivered yet." not in texts(at)
    assert "No deliveries with this status." in texts(at)


# ------------------------------------------------------------------ tenancy


def test_pinned_viewer_never_sees_other_tenants_deliveries_or_scores(seeded, monkeypatch):
    from app import actions
    from pulse.errors import UserError

    monkeypatch.setenv("PULSE_APP_TENANT", TENANT_A)
    at = run("app_pages/alerts.py")
    log = next(d.value for d in at.dataframe if "alert_id" in d.value.columns and "last_error" in d.value.columns)
    assert set(log["delivery_id"]) == {seeded.a_deliveries[1]}
    assert "globex" not in log.to_csv()
    assert queries.deliveries(alert_id=seeded.b_alert).is_empty()
    assert queries.delivery_visible(None, seeded.b_deliveries[0]) is None
    with pytest.raises(UserError, match="no delivery with id"):
        actions.redrive(seeded.b_deliveries[0], "mallory")
    with psycopg.connect(seeded.url) as conn:
        assert conn.execute("select status from deliveries where delivery_id = %s",
                            (seeded.b_deliveries[0],)).fetchone()[0] == "failed"
    with pytest.raises(queries.TenantAccessDenied):
        queries.deliveries(TENANT_B)
    at.switch_page("app_pages/health.py").run()
    assert metric(at, "Deliveries") == "2"
    start, end = _window()
    with pytest.raises(queries.TenantAccessDenied):
        queries.anomaly_scores(TENANT_B, seeded.b_devices[1], ["temp_c"], start, end)
    with pytest.raises(queries.TenantAccessDenied):
        queries.device_silences(TENANT_B, seeded.b_devices[1], start, end)
    with pytest.raises(queries.TenantAccessDenied):
        queries.device_health(TENANT_B, seeded.b_devices[1], start, end)
    # a global silence naming this tenant's device is not shown to a pinned viewer
    from alerting import silences

    with psycopg.connect(seeded.url) as conn:
        silences.add_silence(conn, matchers={"device_id": seeded.a_shown}, starts_at=start + timedelta(hours=1),
                             ends_at=start + timedelta(hours=2), created_by="root")
    assert queries.device_silences(None, seeded.a_shown, start, end).height == 1  # the seeded tenant silence
    monkeypatch.delenv("PULSE_APP_TENANT")
    assert queries.device_silences(TENANT_A, seeded.a_shown, start, end).height == 2
