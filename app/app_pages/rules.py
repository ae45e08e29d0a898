"""Rule lab: write a rule (form or YAML) or start from an applied one, backtest it over stored
telemetry with the live engine's code, see alerts/flaps/pages per day, then save it
(optionally in shadow mode) the way `pulse config apply` stores rules."""

import altair as alt
import polars as pl
import streamlit as st
import yaml

from app import actions, lab, queries, ui
from pulse.errors import UserError

st.title("Rule lab")
tenant = ui.require_tenant("rules_tenant", "No tenants yet: rules need devices to run against.")
if flash := st.session_state.pop("rules_flash", None):
    st.success(flash, icon=":material/check:")

existing = {d["id"]: d for d in queries.rules(tenant)}
EXAMPLE = {"id": "high-temp", "kind": "threshold", "metric": "temp_c", "op": ">", "value": 80, "for": "5m",
           "severity": "warning"}


def _start_from() -> None:
    choice = st.session_state.get("rules_start")
    definition = existing.get(choice, EXAMPLE)
    st.session_state["rules_yaml"] = yaml.safe_dump(definition, sort_keys=False)


mode = st.radio("Write the rule", ["Form", "YAML"], horizontal=True, key="rules_mode")
if mode == "Form":
    metrics = queries.metric_options(tenant)
    f = st.columns(4)
    rid = f[0].text_input("Rule id", value="new-rule", key="rules_form_id")
    kind = f[1].selectbox("Kind", ["threshold", "window"], key="rules_form_kind")
    metric = (f[2].selectbox("Metric", metrics, key="rules_form_metric") if metrics
              else f[2].text_input("Metric", key="rules_form_metric_text"))
    severity = f[3].selectbox("Severity", ["info", "warning", "critical"], index=1, key="rules_form_severity")
    g = st.columns(4)
    op = g[0].selectbox("Operator", [">", ">=", "<", "<=", "==", "!="], key="rules_form_op")
    value = g[1].number_input("Value", value=80.0, key="rules_form_value", format="%g")
    hold = g[2].text_input("For (hold before firing)", value="5m", key="rules_form_for", help="e.g. 0, 30s, 5m, 1h")
    definition = {"id": rid.strip(), "kind": kind, "metric": metric, "op": op, "value": value, "for": hold.strip() or 0,
                  "severity": severity}
    if kind == "window":
        agg = g[3].selectbox("Aggregate", ["avg", "min", "max", "count", "rate", "p95"], key="rules_form_agg")
        window = g[3].text_input("Window", value="10m", key="rules_form_window")
        definition.update(agg=agg, window=window.strip())
else:
    st.selectbox("Start from", ["example"] + list(existing), key="rules_start", on_change=_start_from,
                 help="an applied rule of this tenant, or an example")
    if "rules_yaml" not in st.session_state:
        _start_from()
    definition = st.text_area("Rule (YAML)", height=220, key="rules_yaml")

range_label = st.selectbox("Backtest over", ["Last 24 hours", "Last 7 days", "Last 30 days"], key="rules_range")
if st.button("Backtest", key="rules_backtest", type="primary", icon=":material/history:"):
    try:
        st.session_state["rules_tested"] = (actions.parse_rule(definition, tenant), range_label, tenant)
    except UserError as exc:
        st.session_state.pop("rules_tested", None)
        st.error(f"The rule is not valid: {exc}")

tested = st.session_state.get("rules_tested")
if tested is None or tested[2] != tenant:  # a backtest belongs to the tenant it ran for
    st.caption("Write or pick a rule, then backtest it: stored telemetry is replayed through the live engine's code.")
    st.stop()

rule, tested_range, _ = tested
start, end = ui.time_window(tested_range)
with st.spinner("Replaying stored telemetry…"):
    result = queries.backtest(tenant, [rule], start, end)
st.subheader(f"Backtest of {rule['id']} — {tested_range.lower()}")
st.caption(f"{result['readings']:,} reading(s) of tenant {tenant} replayed")
m = st.columns(4)
m[0].metric("Alerts fired", result["alerts_fired"])
m[1].metric("Flaps", result["flaps"])
stats = result["per_rule"][0] if result["per_rule"] else {"pages": 0, "pages_per_day": 0.0}
m[2].metric("Pages", stats["pages"], help="would-be pages (new problems reaching firing), shadow or not")
m[3].metric("Pages per day", f"{stats['pages_per_day']:.2f}")

daily = lab.backtest_per_day(result["transitions"])
if daily.is_empty():
    st.info("The rule would not have changed state in this period.", icon=":material/notifications_off:")
else:
    long = daily.with_columns(pl.col("day").cast(pl.String)).unpivot(index="day", variable_name="count",
                                                                      value_name="n")
    st.altair_chart(alt.Chart(long.to_pandas()).mark_bar().encode(
        x=alt.X("day:N", title=None), y=alt.Y("n:Q", title="per day"), color="count:N", xOffset="count:N",
        tooltip=["day", "count", "n"]).properties(height=220), width="stretch", key="rules_daily")
    with st.expander(f"Transitions ({len(result['transitions']):,})"):
        st.dataframe(pl.DataFrame(result["transitions"]).head(queries.MAX_POINTS), hide_index=True,
                     key="rules_transitions")

st.subheader("Save")
s1, s2 = st.columns([2, 1], vertical_alignment="bottom")
shadow = s1.checkbox("Shadow mode: evaluate and record, never notify (recommended first)", value=True,
                     key="rules_shadow")
if s2.button("Save rule", key="rules_save", icon=":material/save:"):
    try:
        saved = actions.save_rule({**rule, "shadow": shadow}, tenant)
    except UserError as exc:
        st.error(f"Not saved: {exc}")
    else:
        queries.clear_caches()
        st.session_state["rules_flash"] = (f"Rule {saved['id']} saved{' in shadow mode' if shadow else ''}; "
                                           "the engine picks it up on its next rules check.")
        st.rerun()
