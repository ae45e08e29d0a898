"""Device explorer: metrics over time (grain picked from the range), alert intervals, state."""

from datetime import UTC, datetime

import altair as alt
import polars as pl
import streamlit as st

from app import queries, ui

st.title("Device explorer")
tenant = ui.require_tenant("device_tenant", "No tenants yet: there is nothing to explore.")

fleet = queries.devices(tenant)
# devices that report come first, so the default choice has something to show
ids = fleet.sort(pl.col("last_seen").is_null(), "device_id")["device_id"].to_list()
if not ids:
    st.info(f"Tenant {tenant} has no devices yet.")
    st.stop()

c1, c2, c3 = st.columns([3, 2, 1])
# a new device has other metrics: drop the old choice so the default applies again
device_id = c1.selectbox("Device", ids, key="device_id",
                         on_change=lambda: st.session_state.pop("device_metrics", None))
window = c2.selectbox("Time range", list(ui.RANGES), index=2, key="device_range")
grain = c3.selectbox("Grain", ["auto", "raw", "1m", "1h", "1d"], key="device_grain",
                     help="auto: raw points when they fit, else the finest rollup within 2,000 points")
info = queries.device(tenant, device_id)
metrics_all = queries.device_metrics(tenant, device_id)
chosen = st.multiselect("Metrics", metrics_all, default=metrics_all[:2], key="device_metrics")

m = st.columns(4)
m[0].metric("Last seen", ui.age((datetime.now(UTC) - info["last_seen"]).total_seconds()) + " ago"
            if info["last_seen"] else "never")
m[1].metric("Rows received", f"{info['rows'] or 0:,}")
m[2].metric("Token age", ui.age(info["token_age"].total_seconds()) if info["token_age"] else "no token")
m[3].metric("Status", info["status"])

start, end = ui.time_window(window)
if not chosen:
    st.info("Choose at least one metric.")
else:
    frame, used = queries.series(tenant, device_id, chosen, start, end, grain)
    alert_frame = queries.device_alerts(tenant, device_id, start, end)
    if frame.is_empty():
        st.info(f"No data for {device_id} in the {window.lower()}.", icon=":material/search_off:")
    else:
        sources = ", ".join(sorted(set(frame["source"].to_list())))
        st.caption(f"grain **{used}** · {frame.height:,} points sent ({sources}) · "
                   f"{alert_frame.height} alert interval(s) shaded")
        x = alt.X("time:T", title=None, scale=alt.Scale(domain=[start.isoformat(), end.isoformat()]))
        lines = alt.Chart(frame.to_pandas()).mark_line().encode(
            x=x, y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)), color="metric:N",
            tooltip=["metric", "time:T", "value", "min", "max"])
        layers = [lines]
        if not alert_frame.is_empty():
            spans = alert_frame.select(
                pl.col("started_at").clip(lower_bound=start).alias("from"),
                pl.col("ended_at").clip(upper_bound=end).alias("to"), "rule_id", "severity", "state").to_pandas()
            layers.insert(0, alt.Chart(spans).mark_rect(opacity=0.18, color="red").encode(
                x="from:T", x2="to:T", tooltip=["rule_id", "severity", "state", "from:T", "to:T"]))
        st.altair_chart(alt.layer(*layers).properties(height=380), width="stretch", key="device_chart")

left, right = st.columns(2)
with left:
    st.subheader("Last values")
    values = info["last_values"] or {}
    if values:
        st.dataframe(pl.DataFrame({"metric": list(values), "value": [float(v) for v in values.values()]}),
                     hide_index=True, key="device_last_values")
    else:
        st.caption("No readings yet.")
with right:
    st.subheader("Tags")
    st.json(info["tags"] or {})
    st.caption(f"site {info['site_id'] or '—'} · type {info['device_type'] or '—'}")
