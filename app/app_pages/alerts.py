"""Alerts: list with filters, the event timeline of one alert, operator actions via alerting.api."""

from datetime import UTC, datetime, timedelta

import altair as alt
import streamlit as st

from app import actions, queries, ui

st.title("Alerts")
tenant = ui.current_tenant()
if flash := st.session_state.pop("alerts_flash", None):
    st.success(flash, icon=":material/check:")

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
    st.stop()

st.caption(f"{table.height} alert(s)")
st.dataframe(table.drop("ended_at"), hide_index=True, key="alerts_table")

labels = {r["alert_id"]: f"{r['severity']} · {r['rule_id']} · {r['device_id'] or ''} · {r['state']}"
          for r in table.iter_rows(named=True)}
alert_id = st.selectbox("Alert", list(labels), format_func=lambda a: f"{a} — {labels[a]}", key="alerts_selected")

st.subheader("Event timeline")
events = queries.alert_events(tenant, alert_id)
if events.is_empty():
    st.caption("No events recorded for this alert.")
else:
    st.altair_chart(alt.Chart(events.to_pandas()).mark_circle(size=120).encode(
        x=alt.X("at:T", title=None), y=alt.Y("action:N", title=None), color="to_state:N",
        tooltip=["at:T", "action", "from_state", "to_state", "actor", "reason"]).properties(height=160),
        width="stretch", key="alerts_timeline")
    st.dataframe(events, hide_index=True, key="alerts_events")

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
