"""AppTest for the SLA reports page, the rule lab, saved/metric-range fleet filters, the
silence action and the detector lab's "save as anomaly rule" — against the real test database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from app import queries
from tests.app.app_fixtures import TENANT_A, TENANT_B
from tests.app.test_app_pages import app_env, metric, run, seeded, texts  # noqa: F401  (fixtures)


def _rule_rows(url: str) -> dict[str, dict]:
    with psycopg.connect(url) as conn:
        return {i: d for i, d in conn.execute("select id, definition from config_objects where kind = 'rule'")}


def _report_run(url: str, tenant: str, tmp_path) -> None:
    from assets.sla_delivery import run_sla_report

    label = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    with psycopg.connect(url) as conn:
        run_sla_report(conn, tenant, label, formats=["json"], out_dir=tmp_path / "reports", deliver=False,
                       triggered_by="test")


# ------------------------------------------------------------------ fleet: metric ranges + saved filters


def test_fleet_metric_range_filter(seeded):
    at = run()
    assert "power_kw" in at.multiselect(key="fleet_range_metrics").options
    at.multiselect(key="fleet_range_metrics").set_value(["voltage_v"]).run()
    # only meters report voltage_v: one per tenant reports (the other never did)
    assert set(at.dataframe[0].value["device_type"]) == {"meter"}
    hi = float(at.dataframe[0].value.shape[0])
    assert hi >= 1
    at.number_input(key="fleet_range_voltage_v_lo").set_value(1e9).run()
    assert "No device matches these filters." in texts(at)
    at.number_input(key="fleet_range_voltage_v_hi").set_value(0.0).run()
    assert any("no device can match" in w.value for w in at.warning)
    frame = queries.devices(None, metric_ranges=[("voltage_v", None, None), ("current_a", -1e12, 1e12)])
    assert set(frame["device_type"]) == {"meter"}


def test_saved_filters_round_trip_and_tenancy(seeded, monkeypatch):
    at = run(app_tenant=TENANT_A)
    at.multiselect(key="fleet_tags").set_value(["type=pump"])
    at.multiselect(key="fleet_range_metrics").set_value(["temp_c"]).run()
    at.number_input(key="fleet_range_temp_c_lo").set_value(-100.0).run()
    at.text_input(key="fleet_filter_name").set_value("acme pumps")
    at.button(key="fleet_filter_save").click().run()
    assert any("Saved filter" in s.value for s in at.success)
    assert queries.saved_filters(TENANT_A)["acme pumps"]["tags"] == ["type=pump"]

    at = run(app_tenant=TENANT_A)  # a new session: load it back into the widgets
    assert at.multiselect(key="fleet_tags").value == []
    at.selectbox(key="fleet_saved").set_value("acme pumps")
    at.button(key="fleet_filter_load").click().run()
    assert at.multiselect(key="fleet_tags").value == ["type=pump"]
    assert at.number_input(key="fleet_range_temp_c_lo").value == -100.0
    assert set(at.dataframe[0].value["device_type"]) == {"pump"}
    assert set(at.dataframe[0].value["tenant_id"]) == {TENANT_A}

    # a viewer pinned to tenant B never sees tenant A's saved filters
    monkeypatch.setenv("PULSE_APP_TENANT", TENANT_B)
    at = run()
    assert not any(s.key == "fleet_saved" for s in at.selectbox)
    assert queries.saved_filters() == {}
    with pytest.raises(queries.TenantAccessDenied):
        queries.saved_filters(TENANT_A)
    monkeypatch.delenv("PULSE_APP_TENANT")
    at = run(app_tenant=TENANT_A)
    at.selectbox(key="fleet_saved").set_value("acme pumps")
    at.button(key="fleet_filter_delete").click().run()
    assert queries.saved_filters(TENANT_A) == {}


def test_saved_filter_needs_a_name(seeded):
    at = run()
    at.button(key="fleet_filter_save").click().run()
    assert any("Give the filter a name" in w.value for w in at.warning)


# ------------------------------------------------------------------ alerts: silence


def test_silence_action_and_active_silences(seeded):
    from app import actions

    if actions.load_api() is None:
        pytest.skip("alerting.api is not built in this tree")
    at = run("app_pages/alerts.py")
    assert "No silences in effect" in texts(at)
    at.selectbox(key="alerts_selected").set_value(seeded.a_alert).run()
    at.button(key="alerts_silence").click().run()
    assert "Enter your name" in "\n".join(w.value for w in at.warning)
    at.text_input(key="alerts_actor").set_value("olga")
    at.selectbox(key="alerts_silence_for").set_value("4 hours")
    at.button(key="alerts_silence").click().run()
    assert not at.exception and any("silence" in s.value and "added for 4 hours" in s.value for s in at.success)
    table = next(d.value for d in at.dataframe if "matchers" in d.value.columns)
    row = table.iloc[0]
    assert row["created_by"] == "olga" and row["tenant_id"] == TENANT_A and bool(row["active_now"])
    assert '"rule_id": "acme-hot-pump"' in row["matchers"] and seeded.a_alert.split("-")[-2] in row["matchers"]
    length = (row["ends_at"] - row["starts_at"]).total_seconds()
    assert length == pytest.approx(4 * 3600, abs=5)


def test_silences_are_tenant_scoped(seeded, monkeypatch):
    from alerting import silences

    now = datetime.now(UTC)
    with psycopg.connect(seeded.url) as conn:
        silences.add_silence(conn, matchers={"tenant_id": TENANT_B, "rule_id": "globex-secret-rule"},
                             starts_at=now, ends_at=now + timedelta(hours=1), created_by="bob")
        silences.add_silence(conn, matchers={"device_id": "globex-only"}, starts_at=now,
                             ends_at=now + timedelta(hours=1), created_by="root")  # global (no tenant)
    monkeypatch.setenv("PULSE_APP_TENANT", TENANT_A)
    at = run("app_pages/alerts.py")
    assert "No silences in effect" in texts(at)
    assert queries.silences().is_empty()
    monkeypatch.delenv("PULSE_APP_TENANT")
    assert queries.silences().height == 2


# ------------------------------------------------------------------ SLA reports


def test_sla_page_builds_report_downloads_and_runs(seeded, tmp_path):
    _report_run(seeded.url, TENANT_A, tmp_path)
    _report_run(seeded.url, TENANT_B, tmp_path)
    at = run("app_pages/sla.py", app_tenant=TENANT_A)
    assert at.title[0].value == "SLA reports"
    runs = next(d.value for d in at.dataframe if "run_id" in d.value.columns)
    assert set(runs["tenant_id"]) == {TENANT_A} and list(runs["delivery"]) == ["not delivered"]
    at.button(key="sla_build").click().run()
    assert not at.exception
    assert "%" in metric(at, "Availability")
    assert int(metric(at, "Incidents")) >= 0
    devices = next(d.value for d in at.dataframe if "availability_pct" in d.value.columns and "device_id" in d.value.columns)
    assert set(devices["device_id"]) == set(seeded.a_devices)
    labels = {b.label for b in at.get("download_button")}
    assert labels == {"Download CSV (zip)", "Download JSON", "Download HTML"}
    # a site narrows the report to that site's devices
    at.selectbox(key="sla_site").set_value("site-1").run()
    at.button(key="sla_build").click().run()
    devices = next(d.value for d in at.dataframe if "availability_pct" in d.value.columns and "device_id" in d.value.columns)
    assert set(devices["site_id"]) == {"site-1"}
    # monthly period
    at.radio(key="sla_kind").set_value("Month").run()
    at.button(key="sla_build").click().run()
    assert not at.exception and metric(at, "Availability")


def test_sla_downloads_are_the_report_writers_output(seeded):
    import io
    import json
    import zipfile

    from app import reports

    report = queries.sla_report(TENANT_A, (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d"))
    names = zipfile.ZipFile(io.BytesIO(reports.csv_zip(report))).namelist()
    assert any(n.endswith("-devices.csv") for n in names) and any(n.endswith("-incidents.csv") for n in names)
    assert json.loads(reports.json_text(report))["summary"]["tenant_id"] == TENANT_A
    assert reports.html_text(report).startswith("<!DOCTYPE html>")


def test_sla_tenancy_and_bad_period(seeded, monkeypatch, tmp_path):
    from pulse.errors import UserError

    _report_run(seeded.url, TENANT_B, tmp_path)
    with pytest.raises(UserError):
        queries.sla_report(TENANT_A, "2026-13")
    monkeypatch.setenv("PULSE_APP_TENANT", TENANT_A)
    at = run("app_pages/sla.py")
    assert "No report has run for this tenant yet" in texts(at)
    assert queries.report_runs().is_empty()
    with pytest.raises(queries.TenantAccessDenied):
        queries.sla_report(TENANT_B, "2026-11")
    with pytest.raises(queries.TenantAccessDenied):
        queries.report_runs(TENANT_B)


# ------------------------------------------------------------------ rule lab


def test_rule_lab_backtest_and_save_in_shadow_mode(seeded):
    at = run("app_pages/rules.py", app_tenant=TENANT_A)
    assert "Rule lab" in texts(at)
    at.radio(key="rules_mode").set_value("YAML").run()
    at.text_area(key="rules_yaml").set_value("id: acme-power\nkind: threshold\nmetric: power_kw\nop: '>'\n"
                                             "value: -1000000\nseverity: warning\n")
    at.selectbox(key="rules_range").set_value("Last 24 hours")
    at.button(key="rules_backtest").click().run()
    assert not at.exception
    assert int(metric(at, "Alerts fired")) == 2  # the reporting chiller and pump of tenant A have power_kw
    assert int(metric(at, "Pages")) == 2
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
    at.button(key="rules_save").click().run()
    assert any("saved in shadow mode" in s.value for s in at.success)
    saved = _rule_rows(seeded.url)["acme-power"]
    assert saved["shadow"] is True and saved["target"]["tenant"] == TENANT_A
    # the applied rule is now offered as a starting point
    at.selectbox(key="rules_start").set_value("acme-power").run()
    assert "acme-power" in at.text_area(key="rules_yaml").value


def test_rule_lab_form_and_user_mistakes(seeded):
    at = run("app_pages/rules.py", app_tenant=TENANT_A)
    at.text_input(key="rules_form_id").set_value("acme-hot")
    at.selectbox(key="rules_form_metric").set_value("temp_c")
    at.number_input(key="rules_form_value").set_value(1e9)
    at.button(key="rules_backtest").click().run()
    assert int(metric(at, "Alerts fired")) == 0
    assert "would not have changed state" in texts(at)
    at.text_input(key="rules_form_for").set_value("soon")
    at.button(key="rules_backtest").click().run()
    assert any("The rule is not valid" in e.value for e in at.error) and not at.exception
    at.radio(key="rules_mode").set_value("YAML").run()
    at.text_area(key="rules_yaml").set_value("id: [unclosed")
    at.button(key="rules_backtest").click().run()
    assert any("not valid YAML" in e.value for e in at.error)


def test_rule_lab_tenancy(seeded, monkeypatch):
    from app import actions
    from pulse.errors import UserError

    actions.save_rule({"id": "globex-rule", "kind": "threshold", "metric": "temp_c", "op": ">", "value": 1}, TENANT_B)
    monkeypatch.setenv("PULSE_APP_TENANT", TENANT_A)
    assert queries.rules() == []
    at = run("app_pages/rules.py")
    at.radio(key="rules_mode").set_value("YAML").run()
    assert at.selectbox(key="rules_start").options == ["example"]
    at.text_area(key="rules_yaml").set_value("id: x\nkind: threshold\nmetric: temp_c\nop: '>'\nvalue: 1\n"
                                             "target: {tenant: globex}\n")
    at.button(key="rules_backtest").click().run()
    assert any("this rule lab works on tenant 'acme'" in e.value for e in at.error)
    with pytest.raises(UserError, match="already used"):  # never overwrite another tenant's rule
        actions.save_rule({"id": "globex-rule", "kind": "threshold", "metric": "temp_c", "op": ">", "value": 2},
                          TENANT_A)
    assert _rule_rows(seeded.url)["globex-rule"]["value"] == 1
    with pytest.raises(queries.TenantAccessDenied):
        queries.backtest(TENANT_B, [], datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))


def test_backtest_per_day_counts():
    from app import lab

    t = [{"at": "2026-11-01T10:00:00+00:00", "alert_id": "a", "from_state": "inactive", "to_state": "firing"},
         {"at": "2026-11-01T10:05:00+00:00", "alert_id": "a", "from_state": "firing", "to_state": "flapping"},
         {"at": "2026-11-02T10:00:00+00:00", "alert_id": "b", "from_state": "pending", "to_state": "firing"}]
    daily = lab.backtest_per_day(t)
    assert daily.rows() == [(datetime(2026, 11, 1).date(), 1, 1, 1), (datetime(2026, 11, 2).date(), 1, 0, 1)]
    assert lab.backtest_per_day([]).is_empty()


# ------------------------------------------------------------------ detector lab: save as anomaly rule


def test_detector_lab_saves_shadow_anomaly_rule(seeded):
    at = run("app_pages/lab.py", app_tenant=TENANT_B)
    at.radio(key="lab_source").set_value("Fleet series").run()
    at.selectbox(key="lab_detector").set_value("robust_z").run()
    at.button(key="lab_run").click().run()
    assert "Save as a fleet anomaly rule" in texts(at)
    metric_name = at.selectbox(key="lab_metric").value
    at.text_input(key="lab_rule_id").set_value("globex-anomaly")
    at.button(key="lab_rule_save").click().run()
    assert not at.exception and any("saved for globex in shadow mode" in s.value for s in at.success)
    rule = _rule_rows(seeded.url)["globex-anomaly"]
    assert rule["kind"] == "anomaly" and rule["shadow"] is True and rule["detector"] == "robust_z"
    assert rule["metric"] == metric_name and rule["target"]["tenant"] == TENANT_B and "devices" not in rule["target"]
    assert "window" in rule["labels"]["detector_params"]
    assert "Flagged points" in [m.label for m in at.metric]  # the result stays on screen after saving
