"""Data health: ingest volume, notification delivery, lake freshness per tenant, asset checks,
quarantine."""

import altair as alt
import polars as pl
import streamlit as st

from app import queries, ui

st.title("Data health")
tenant = ui.current_tenant()

st.subheader("Ingest")
ingest = queries.ingest_hours(tenant, 48)
kpis = queries.fleet_kpis(tenant)
c = st.columns(3)
c[0].metric("Rows, last 48 h", f"{int(ingest['rows'].sum() or 0):,}")
c[1].metric("Ingest rate", f"{kpis['ingest_rows_per_s']:,.1f} rows/s")
c[2].metric("Newest reading", ui.age(kpis["freshness_s"]) + (" ago" if kpis["freshness_s"] is not None else ""))
if ingest.is_empty():
    st.caption("No telemetry ingested in the last 48 hours.")
else:
    st.altair_chart(alt.Chart(ingest.to_pandas()).mark_bar().encode(
        x=alt.X("hour:T", title=None), y=alt.Y("rows:Q", title="rows per hour"), tooltip=["hour:T", "rows"]),
        width="stretch", key="health_ingest_chart")

st.subheader("Notification delivery (last 24 h)")
sent = queries.delivery_metrics(tenant, 24)
d = st.columns(4)
d[0].metric("Deliveries", f"{sent['deliveries']:,}")
d[1].metric("Delivered", f"{sent['sent']:,}")
d[2].metric("Delivery failure rate", "—" if sent["failure_rate"] is None else f"{100 * sent['failure_rate']:.1f} %",
            help="failed + dead over all deliveries created in the last 24 h")
d[3].metric("Attempt failure rate",
            "—" if sent["attempt_failure_rate"] is None else f"{100 * sent['attempt_failure_rate']:.1f} %",
            help=f"{sent['failed_attempts']:,} of {sent['attempts']:,} attempts failed")
if sent["deliveries"] == 0:
    st.caption("No notifications in the last 24 hours.")
else:
    st.altair_chart(alt.Chart(sent["by_channel_status"].to_pandas()).mark_bar().encode(
        y=alt.Y("channel_id:N", title=None), x=alt.X("deliveries:Q", title="deliveries", axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("status:N", scale=alt.Scale(domain=["sent", "pending", "failed", "dead"],
                                                    range=["seagreen", "steelblue", "orange", "firebrick"])),
        tooltip=["channel_id", "status", "deliveries"]), width="stretch", key="health_delivery_chart")
    if sent["failing"]:
        st.caption(f"{sent['failing']} failed or dead — re-drive them from the delivery log on the Alerts page.")

st.subheader("Lake freshness")
lake = queries.lake_freshness(tenant)
if lake.is_empty():
    st.info("Nothing exported to the Parquet lake yet (the Dagster lake export runs hourly).")
else:
    st.dataframe(lake.with_columns(pl.col("freshness_s").map_elements(ui.age, return_dtype=pl.String)
                                   .alias("lag")), hide_index=True, key="health_lake")

st.subheader("Asset checks")
checks = queries.check_results()
if checks.is_empty():
    st.info("No asset check results recorded yet.")
else:
    failed = checks.filter(~pl.col("passed"))
    c = st.columns(2)
    c[0].metric("Checks passing", checks.height - failed.height)
    c[1].metric("Checks failing", failed.height)
    if queries.viewer_tenant():
        checks = checks.drop("metadata")  # platform-wide metadata is not for tenant viewers
    st.dataframe(checks, hide_index=True, key="health_checks")

st.subheader("Quarantine")
counts = queries.quarantine_counts(tenant)
if not counts:
    st.success("Nothing quarantined.", icon=":material/check_circle:")
else:
    frame = pl.DataFrame({"reason": list(counts), "count": list(counts.values())})
    st.altair_chart(alt.Chart(frame.to_pandas()).mark_bar().encode(
        y=alt.Y("reason:N", sort="-x", title=None), x="count:Q", tooltip=["reason", "count"]),
        width="stretch", key="health_quarantine_chart")
    for reason, n in counts.items():
        with st.expander(f"{reason} — {n:,}"):
            samples = queries.quarantine_samples(tenant, reason, 10)
            st.dataframe(pl.DataFrame(samples).select(
                "received_at", "transport", "tenant_id", "device_id", "detail", "payload_preview"),
                hide_index=True, key=f"health_q_{reason}")
