"""Alerts: list with filters, the timeline of one alert (events and notifications with their
delivery status), operator actions via alerting.api, the delivery log with re-drive."""

from datetime import UTC, datetime, timedelta

import altair as alt
import polars as pl
import streamlit as st

from app import actions, queries, ui

st.title("Alerts")
tenant = ui.current_tenant()
if flash := st.session_state.pop("alerts_flash", None):
    st.success(flash, icon=":material/check:")

def delivery_log(actor: str | None) -> None:
    """Every notification in the viewer's scope, with re-drive of failed/dead ones."""
    st.subheader("Delivery log")
    d1, d2 = st.columns([3, 1])
    status = d1.multiselect("Delivery status", list(queries.DELIVERY_STATUSES), default=list(queries.REDRIVABLE),
                            key="alerts_delivery_status")
    log = queries.deliveries(tenant, statuses=status, limit=int(d2.number_input(
        "Show at most", 10, 5000, 200, step=50, key="alerts_delivery_limit")))
    if log.is_empty():
        st.caption("No deliveries with this status." if status else "No notifications delivered yet.")
        return
    st.dataframe(log, hide_index=True, key="alerts_delivery_log")
    stuck = log.filter(pl.col("status").is_in(queries.REDRIVABLE))
    if stuck.is_empty():
        return
    names = {r["delivery_id"]: f"{r['delivery_id']} · {r['status']} · {r['channel_id']} · {r['alert_id']}"
             for r in stuck.iter_rows(named=True)}
    r1, r2, r3 = st.columns([3, 2, 1], vertical_alignment="bottom")
    chosen = r1.selectbox("Failed or dead delivery", list(names), format_func=names.get, key="alerts_redrive_id")
    if actor is None:
        actor = r2.text_input("Your name", key="alerts_redrive_actor")
    if r3.button("Re-drive", key="alerts_redrive", icon=":material/replay:",
                 help="back in the queue with a fresh attempt budget (same as `pulse deliveries retry ID`)"):
        from pulse.errors import UserError

        if not actor.strip():
            st.warning("Enter your name: the re-drive is recorded in the alert's audit trail.")
            return
        try:
            actions.redrive(int(chosen), actor.strip(), tenant)
        except UserError as exc:
            st.error(f"re-drive failed: {exc}")
            return
        queries.clear_caches()
        st.session_state["alerts_flash"] = f"delivery {chosen} re-queued by {actor.strip()}."
        st.rerun()


OPEN = ["pending", "firing", "acknowledged", "flapping"]
SINCE = {"any time": None, "last 24 hours": timedelta(days=1), "last 7 days": timedelta(days=7),
         "last 30 days": timedelta(days=30)}
f1, f2, f3, f4 = st.columns([2, 2, 2, 1])
states = f1.multiselect("State", list(queries.ALERT_STATES), default=OPEN, key="alerts_states")
sevs = f2.multiselect("Severity", queries.severities(tenant), key="alerts_severity")
search = f3.text_input("Search rule, device, summary", key="alerts_search")
since_label = f4.selectbox("Active", list(SINCE), key="alerts_since")
since = datetime.now(UTC).replace(second=0, microsecond=0) - SINCE[since_label] if SINCE[since_label] else None

table = queries.alerts(tenant, states=states, severities=sevs, search=search, since=since)
if table.is_empty():
    st.info("No alerts match these filters.", icon=":material/notifications_off:")
    delivery_log(None)
    st.stop()

st.caption(f"{table.height} alert(s)")
st.dataframe(table.drop("ended_at"), hide_index=True, key="alerts_table")

labels = {r["alert_id"]: f"{r['severity']} · {r['rule_id']} · {r['device_id'] or ''} · {r['state']}"
          for r in table.iter_rows(named=True)}
alert_id = st.selectbox("Alert", list(labels), format_func=lambda a: f"{a} — {labels[a]}", key="alerts_selected")

st.subheader("Event timeline")
events = queries.alert_events(tenant, alert_id)
notified = queries.deliveries(tenant, alert_id=alert_id)
if events.is_empty() and notified.is_empty():
    st.caption("No events recorded for this alert.")
else:
    # one lane per action, one per notification channel; a delivery sits at its last attempt
    points = pl.concat([
        events.select("at", pl.col("action").alias("lane"), pl.col("to_state").alias("status"), "actor", "reason"),
        notified.select(pl.coalesce("sent_at", "last_attempt_at", "created_at").alias("at"),
                        pl.format("notify → {}", "channel_id").alias("lane"), "status",
                        pl.col("target").alias("actor"), pl.col("last_error").alias("reason")),
    ])
    st.altair_chart(alt.Chart(points.to_pandas()).mark_circle(size=120).encode(
        x=alt.X("at:T", title=None, scale=alt.Scale(padding=16)), y=alt.Y("lane:N", title=None, sort=None, axis=alt.Axis(labelLimit=260)), color="status:N",
        tooltip=["at:T", "lane", "status", "actor", "reason"]).properties(height=60 + 24 * points["lane"].n_unique()),
        width="stretch", key="alerts_timeline")
    if not events.is_empty():
        st.dataframe(events, hide_index=True, key="alerts_events")
st.markdown("**Notifications**")
if notified.is_empty():
    st.caption("No notifications were sent for this alert.")
else:
    st.dataframe(notified.select("delivery_id", "created_at", "event", "channel_id", "target", "status", "attempts",
                                 "last_status_code", "last_error", "last_attempt_at", "sent_at"),
                 hide_index=True, key="alerts_deliveries")

st.subheader("Active silences")
silenced = queries.silences(tenant)
if silenced.is_empty():
    st.caption("No silences in effect or scheduled.")
else:
    st.dataframe(silenced, hide_index=True, key="alerts_silences")

st.subheader("Actions")
can = actions.available()
if not any(can.values()):
    st.info("Read-only: the alerting API (alerting.api) is not available in this deployment.",
            icon=":material/visibility:")
    delivery_log(None)
    st.stop()
a1, a2 = st.columns([2, 1])
actor = a1.text_input("Your name", key="alerts_actor")
resolution = a2.selectbox("Resolution (for Resolve)", actions.resolutions(), key="alerts_resolution")
note = st.text_area("Comment", key="alerts_note")
SILENCE_FOR = {"1 hour": 3600, "4 hours": 4 * 3600, "24 hours": 86400, "7 days": 7 * 86400}
b1, b2, b3, b4, b5 = st.columns([1, 1, 1, 1, 1], vertical_alignment="bottom")
pressed = None
if b1.button("Acknowledge", key="alerts_ack", disabled=not can["ack"]):
    pressed = "ack"
if b2.button("Resolve", key="alerts_resolve", disabled=not can["resolve"]):
    pressed = "resolve"
if b3.button("Comment", key="alerts_comment", disabled=not can["comment"]):
    pressed = "comment"
silence_for = b4.selectbox("Silence for", list(SILENCE_FOR), key="alerts_silence_for",
                           help="silences this alert's rule on its device (tenant + rule + device matchers)")
if b5.button("Silence", key="alerts_silence", icon=":material/notifications_paused:"):
    pressed = "silence"
if pressed:
    if not actor.strip():
        st.warning("Enter your name: every action is recorded in the audit trail.")
    elif not queries.alert_visible(tenant, alert_id):
        st.error("This alert is not visible to you.")
    else:
        from pulse.errors import UserError

        try:
            if pressed == "silence":
                row = table.filter(table["alert_id"] == alert_id).row(0, named=True)
                made = actions.silence(row, actor.strip(), SILENCE_FOR[silence_for], note.strip() or None)
                done = f"silence {made.silence_id} added for {silence_for} ({row['rule_id']} on {row['device_id'] or 'all devices'})."
            else:
                actions.perform(pressed, alert_id, actor.strip(), note.strip() or None, resolution)
                done = f"{pressed} recorded for {alert_id}."
        except (UserError, actions.ActionUnavailable) as exc:  # e.g. already resolved → a message
            st.error(f"{pressed} failed: {exc}")
        else:
            queries.clear_caches()  # the list and the timeline must show the action now
            st.session_state["alerts_flash"] = done
            st.rerun()

delivery_log(actor)
