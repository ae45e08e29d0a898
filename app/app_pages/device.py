"""Device explorer: metrics over time (grain picked from the range) with anomaly scores, alert
intervals and silences; health timeline, last values, tags."""

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
    scores = queries.anomaly_scores(tenant, device_id, chosen, start, end)
    silenced = queries.device_silences(tenant, device_id, start, end)
    if frame.is_empty():
        st.info(f"No data for {device_id} in the {window.lower()}.", icon=":material/search_off:")
    else:
        sources = ", ".join(sorted(set(frame["source"].to_list())))
        level = queries.score_threshold()
        flagged = scores.filter(pl.col("score") >= level)
        score_note = (f"{scores.height:,} anomaly scores ({flagged.height} ≥ {level:g})" if not scores.is_empty()
                      else "no anomaly scores for these metrics")
        st.caption(f"grain **{used}** · {frame.height:,} points sent ({sources}) · "
                   f"{alert_frame.height} alert interval(s) shaded · {score_note} · "
                   f"{silenced.height} silence span(s) marked")
        x = alt.X("time:T", title=None, scale=alt.Scale(domain=[start.isoformat(), end.isoformat()]))
        lines = alt.Chart(frame.to_pandas()).mark_line().encode(
            x=x, y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)), color="metric:N",
            tooltip=["metric", "time:T", "value", "min", "max"])
        layers = [lines]
        if not scores.is_empty():  # right axis, 0..1: the score line, the threshold, points above it
            y_score = alt.Y("score:Q", title="anomaly score", scale=alt.Scale(domain=[0, 1]),
                            axis=alt.Axis(orient="right"))
            base = alt.Chart(scores.to_pandas())
            score_layers = [
                base.mark_line(strokeDash=[3, 3], opacity=0.55).encode(
                    x="time:T", y=y_score, color="metric:N", tooltip=["metric", "time:T", "score"]),
                alt.Chart(pl.DataFrame({"level": [level]}).to_pandas()).mark_rule(
                    color="crimson", strokeDash=[6, 4], opacity=0.6).encode(y=alt.Y("level:Q", scale=alt.Scale(domain=[0, 1]))),
            ]
            if not flagged.is_empty():
                score_layers.append(alt.Chart(flagged.to_pandas()).mark_point(
                    color="crimson", filled=True, size=45).encode(
                    x="time:T", y=y_score, tooltip=["metric", "time:T", "score"]))
            layers.append(alt.layer(*score_layers))
        if not alert_frame.is_empty():
            spans = alert_frame.select(
                pl.col("started_at").clip(lower_bound=start).alias("from"),
                pl.col("ended_at").clip(upper_bound=end).alias("to"), "rule_id", "severity", "state").to_pandas()
            layers.insert(0, alt.Chart(spans).mark_rect(opacity=0.18, color="red").encode(
                x="from:T", x2="to:T", tooltip=["rule_id", "severity", "state", "from:T", "to:T"]))
        if not silenced.is_empty():
            bands = alt.Chart(silenced.to_pandas())
            layers[:0] = [bands.mark_rect(opacity=0.15, color="slategray").encode(
                              x="from:T", x2="to:T", tooltip=["silence_id", "matchers", "created_by", "comment",
                                                              "from:T", "to:T"]),
                          bands.mark_rule(color="slategray", strokeDash=[2, 2]).encode(x="from:T")]
        chart = alt.layer(*layers)
        if not scores.is_empty():
            chart = chart.resolve_scale(y="independent")
        st.altair_chart(chart.properties(height=380), width="stretch", key="device_chart")
        if not silenced.is_empty():
            with st.expander(f"Silences concerning {device_id} ({silenced.height})"):
                st.dataframe(silenced, hide_index=True, key="device_silences")

st.subheader("Health")
health = queries.device_health(tenant, device_id, start, end)
timeline = health["intervals"]
if not health["has_readings"]:
    st.caption(f"{device_id} has no readings in the hot store up to the end of this range.")
elif timeline.is_empty():
    st.caption("No health intervals in this range.")
else:
    offline = timeline.filter(pl.col("status") == "offline")
    h = st.columns(3)
    h[0].metric("Offline intervals", offline.height)
    h[1].metric("Offline time", ui.age(float(offline["duration_s"].sum() or 0)))
    h[2].metric("Online share", f"{100 * (1 - (offline['duration_s'].sum() or 0) / timeline['duration_s'].sum()):.1f} %")
    st.altair_chart(alt.Chart(timeline.to_pandas()).mark_bar(height=18).encode(
        x=alt.X("start:T", title=None, scale=alt.Scale(domain=[start.isoformat(), end.isoformat()])),
        x2="end:T", y=alt.Y("status:N", title=None, sort=["online", "offline"]),
        color=alt.Color("status:N", scale=alt.Scale(domain=["online", "offline"], range=["seagreen", "firebrick"]),
                        legend=None),
        tooltip=["status", "start:T", "end:T", "duration_s"]).properties(height=80),
        width="stretch", key="device_health_chart")
    note = f"offline after {health['multiplier']:g} × the device's median reporting gap"
    if health["since"] > start:
        note += f"; from its first raw reading in the hot store ({health['since']:%Y-%m-%d %H:%M} UTC)"
    if health["bucket_s"] >= 60:  # coarser than a typical reporting interval
        note += f"; readings bucketed to {health['bucket_s']} s"
    st.caption(note)

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
