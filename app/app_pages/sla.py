"""SLA reports: availability per tenant/site for a day or a month, incidents, MTTA/MTTR,
downloads (CSV/JSON/HTML), and the history of scheduled runs with their delivery."""

from datetime import UTC, date, datetime, timedelta

import altair as alt
import polars as pl
import streamlit as st

from app import queries, reports, ui
from assets.report_html import duration
from assets.sla import previous_period

st.title("SLA reports")
tenant = ui.require_tenant("sla_tenant", "No tenants yet: there is nothing to report on.")

zone = queries.tenant_time_zone(tenant)
today = datetime.now(UTC)
c1, c2, c3 = st.columns([1, 2, 2])
kind = c1.radio("Period", ["Day", "Month"], horizontal=True, key="sla_kind")
if kind == "Day":
    default_day = date.fromisoformat(previous_period("daily", today, zone))
    day = c2.date_input("Day", value=default_day, max_value=default_day + timedelta(days=1), key="sla_day",
                        help=f"a calendar day in the tenant's time zone ({zone})")
    label = day.isoformat()
else:
    months, d = [], today.date().replace(day=1)
    for _ in range(13):
        months.append(f"{d:%Y-%m}")
        d = (d - timedelta(days=1)).replace(day=1)
    label = c2.selectbox("Month", months, index=1, key="sla_month", help=f"in the tenant's time zone ({zone})")
site_ids = queries.sites(tenant)["site_id"].to_list()
site_choice = c3.selectbox("Site", ["All sites"] + site_ids, key="sla_site")
site = None if site_choice == "All sites" else site_choice

wanted = (tenant, label, site)
if st.button("Build report", key="sla_build", type="primary", icon=":material/summarize:"):
    st.session_state["sla_built"] = wanted
if st.session_state.get("sla_built") != wanted:
    st.caption(f"Choose a period and build the report: availability of every device of {tenant}"
               f"{' at ' + site if site else ''} for {label}, from the lake and the hot store.")
else:
    from pulse.errors import UserError

    try:
        with st.spinner("Computing availability…"):
            report = queries.sla_report(tenant, label, site)
    except UserError as exc:
        st.error(f"Cannot build this report: {exc}")
        report = None
    if report is not None:
        s = report.summary()
        a = report.avail
        if s["devices"] == 0:
            st.info(f"No active devices {'at ' + site if site else 'for ' + tenant}: nothing to report.")
        else:
            if s["partial"]:
                st.caption(f"Partial report: {label} is not over yet (data up to {s['generated_at'][:16]} UTC).")
            k = st.columns(6)
            k[0].metric("Availability", f"{s['availability_pct']:.3f}%" if s["availability_pct"] is not None else "–",
                        delta=("meets" if s["meets_target"] else "misses") + f" {s['target_pct']:g}% target",
                        delta_color="green" if s["meets_target"] else "red", delta_arrow="off")
            k[1].metric("Downtime", duration(s["downtime_s"]))
            k[2].metric("Incidents", s["incidents"])
            k[3].metric("Devices below target", s["devices_below_target"])
            k[4].metric("MTTA", duration(s["mtta_s"]), help=f"mean time to acknowledge over {s['alerts']} alert(s)")
            k[5].metric("MTTR", duration(s["mttr_s"]), help="mean time to resolve")

            left, right = st.columns(2)
            unit = "day" if report.period.kind == "monthly" else "hour"
            rule = alt.Chart(pl.DataFrame({"target": [report.target_pct]}).to_pandas()).mark_rule(
                color="red", strokeDash=[4, 3]).encode(y="target:Q")
            with left:
                st.markdown(f"**Availability per {unit}**")
                st.altair_chart(alt.layer(alt.Chart(a.timeline.to_pandas()).mark_bar().encode(
                    x=alt.X("bucket:O", title=None), y=alt.Y("availability_pct:Q", title="%", scale=alt.Scale(zero=False)),
                    tooltip=["bucket", "availability_pct"]), rule).properties(height=240),
                    width="stretch", key="sla_timeline")
            with right:
                st.markdown("**Availability by site**")
                st.altair_chart(alt.layer(alt.Chart(a.sites.head(queries.MAX_POINTS).to_pandas()).mark_bar().encode(
                    x=alt.X("site_id:N", title=None, sort="y"), y=alt.Y("availability_pct:Q", title="%",
                                                                        scale=alt.Scale(zero=False)),
                    tooltip=["site_id", "devices", "availability_pct", "incidents"]), rule).properties(height=240),
                    width="stretch", key="sla_sites_chart")

            tab_sites, tab_devices, tab_incidents, tab_response = st.tabs(
                ["Sites", "Devices", f"Downtime incidents ({a.incidents.height})", "MTTA / MTTR"])
            tab_sites.dataframe(a.sites, hide_index=True, key="sla_sites")
            tab_devices.dataframe(a.devices.sort("availability_pct", "device_id"), hide_index=True, key="sla_devices")
            if a.incidents.is_empty():
                tab_incidents.caption("No downtime in this period.")
            else:
                tab_incidents.dataframe(a.incidents, hide_index=True, key="sla_incidents")
            if report.response.is_empty():
                tab_response.caption("No alert fired in this period.")
            else:
                tab_response.dataframe(report.response, hide_index=True, key="sla_response")

            base = f"sla-{tenant}{'-' + site if site else ''}-{label}"
            d1, d2, d3 = st.columns(3)
            d1.download_button("Download CSV (zip)", reports.csv_zip(report), file_name=f"{base}-csv.zip",
                               mime="application/zip", key="sla_dl_csv", icon=":material/download:")
            d2.download_button("Download JSON", reports.json_text(report), file_name=f"{base}.json",
                               mime="application/json", key="sla_dl_json", icon=":material/download:")
            d3.download_button("Download HTML", reports.html_text(report), file_name=f"{base}.html",
                               mime="text/html", key="sla_dl_html", icon=":material/download:")

st.subheader("Report runs")
runs = queries.report_runs(tenant)
if runs.is_empty():
    st.caption("No report has run for this tenant yet (the Dagster schedule runs daily and monthly reports; "
               "`pulse report sla` runs one by hand).")
else:
    failed = runs.filter(pl.col("status").is_in(["failed", "delivery_failed"])).height
    st.caption(f"{runs.height} run(s), {failed} with a failure")
    st.dataframe(runs, hide_index=True, key="sla_runs",
                 column_config={"status": st.column_config.TextColumn("status"),
                                "delivery": st.column_config.TextColumn("delivery", width="large")})
