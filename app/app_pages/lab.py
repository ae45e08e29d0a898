"""Detector lab: run a registry detector over a NAB file or a fleet series; show scores,
flagged points and (for NAB files) the NAB score of that file."""

import altair as alt
import polars as pl
import streamlit as st

from app import actions, lab, queries, ui
from detectors import registry

st.title("Detector lab")
CHART_POINTS = queries.MAX_POINTS

source = st.radio("Series", ["NAB file", "Fleet series"], horizontal=True, key="lab_source")

values = times = None
corpus = None
key = tenant = device_id = metric = window = None
if source == "NAB file":
    files = queries.nab_files()
    if not files:
        st.info("The NAB corpus was not found: set PULSE_NAB_DIR to a checkout of github.com/numenta/NAB.")
        st.stop()
    default = files.index("realKnownCause/nyc_taxi.csv") if "realKnownCause/nyc_taxi.csv" in files else 0
    key = st.selectbox("NAB file", files, index=default, key="lab_file")
    corpus = queries.nab_corpus(key)
    f = corpus.files[0]
    values, times = f.values, pl.Series(f.timestamps).str.to_datetime("%Y-%m-%d %H:%M:%S")
else:
    tenant = ui.pick_tenant("lab_tenant")
    # only devices that reported have a series to score
    ids = queries.devices(tenant, statuses=["online", "offline"])["device_id"].to_list() if tenant else []
    if not ids:
        st.info("No device has reported data yet: pick a NAB file instead.")
        st.stop()
    c1, c2, c3 = st.columns(3)
    device_id = c1.selectbox("Device", ids, key="lab_device",
                             on_change=lambda: st.session_state.pop("lab_metric", None))
    metric = c2.selectbox("Metric", queries.device_metrics(tenant, device_id), key="lab_metric")
    window = c3.selectbox("Time range", list(ui.RANGES), index=3, key="lab_range")
    start, end = ui.time_window(window)
    frame, used = queries.series(tenant, device_id, [metric], start, end, "auto") if metric else (pl.DataFrame(), "")
    if frame.is_empty():
        st.info("No data for this series in the range.")
        st.stop()
    st.caption(f"{frame.height:,} points at grain {used}")
    values, times = frame["value"].to_numpy(), frame["time"]

det_names = registry.names()
detector = st.selectbox("Detector", det_names, index=det_names.index(registry.DEFAULT), key="lab_detector")
st.caption(registry.get(detector).summary)

params = {}
with st.expander("Parameters", expanded=True):
    cols = st.columns(3)
    for i, spec in enumerate(registry.param_specs(detector)):
        wkey = f"lab_param_{detector}_{spec['name']}"
        lo, hi = spec["bounds"]["min"], spec["bounds"]["max"]
        col = cols[i % 3]
        if "choices" in spec:
            params[spec["name"]] = col.selectbox(spec["name"], spec["choices"],
                                                 index=spec["choices"].index(spec["default"]), key=wkey,
                                                 help=spec["help"])
        elif spec["type"] == "bool":
            params[spec["name"]] = col.checkbox(spec["name"], value=bool(spec["default"]), key=wkey, help=spec["help"])
        elif spec["type"] == "int":
            params[spec["name"]] = int(col.number_input(spec["name"], min_value=None if lo is None else int(lo),
                                                        max_value=None if hi is None else int(hi),
                                                        value=int(spec["default"]), step=1, key=wkey,
                                                        help=spec["help"]))
        elif spec["type"] == "float":
            params[spec["name"]] = float(col.number_input(spec["name"], min_value=None if lo is None else float(lo),
                                                          max_value=None if hi is None else float(hi),
                                                          value=float(spec["default"]), key=wkey, format="%.4g",
                                                          help=spec["help"]))
        else:
            params[spec["name"]] = col.text_input(spec["name"], value=str(spec["default"] or ""), key=wkey,
                                                  help=spec["help"])

threshold = 0.9
labelled = corpus is not None and bool(corpus.files[0].windows)
if not labelled:
    if corpus is not None:
        st.caption("This NAB file has no labelled anomalies, so it has no NAB score: every flag is a false positive.")
    threshold = st.slider("Flag threshold", 0.0, 1.0, 0.9, 0.01, key="lab_threshold",
                          help="without labels there is no optimal threshold: choose one")

# the result stays on screen (e.g. while saving it as a rule) until the configuration changes
config_key = repr((source, key if corpus is not None else (tenant, device_id, metric, window), detector,
                   sorted(params.items()), threshold))
if st.button("Run detector", key="lab_run", type="primary"):
    st.session_state["lab_ran"] = config_key
if st.session_state.get("lab_ran") != config_key:
    st.caption("Choose a series and a detector, then run it.")
    st.stop()

try:
    checked = lab.validate(detector, params)
except registry.InvalidParamsError as exc:
    st.error(str(exc))
    st.stop()
with st.spinner("Scoring…"):
    result = (lab.run_nab_file(key, detector, checked, threshold) if corpus is not None
              else lab.run_series(values, detector, checked, threshold))

if result.nab:
    st.subheader("NAB score of this file")
    cols = st.columns(len(result.nab))
    for col, (profile, r) in zip(cols, result.nab.items()):
        col.metric(profile, f"{r['score']:.1f}",
                   help=f"threshold {r['threshold']:.4f} · windows hit {r['tp']} · FP {r['fp']} · missed {r['fn']}")
st.metric("Flagged points", len(result.flagged), help=f"score ≥ {result.threshold:.4f}")

plot = pl.DataFrame({"time": times, "value": values, "score": result.scores, "metric": "series"})
shown = queries.downsample(plot, CHART_POINTS)
flags = plot[result.flagged.tolist()] if len(result.flagged) else plot.head(0)
base_x = alt.X("time:T", title=None)
layers = []
if corpus is not None and corpus.files[0].windows:
    wins = pl.DataFrame({"from": [times[s] for s, _ in corpus.files[0].windows],
                         "to": [times[e] for _, e in corpus.files[0].windows]})
    layers.append(alt.Chart(wins.to_pandas()).mark_rect(opacity=0.15, color="orange").encode(x="from:T", x2="to:T"))
layers.append(alt.Chart(shown.to_pandas()).mark_line().encode(x=base_x, y=alt.Y("value:Q", scale=alt.Scale(zero=False))))
if flags.height:
    layers.append(alt.Chart(flags.head(CHART_POINTS).to_pandas()).mark_point(color="red", filled=True).encode(
        x=base_x, y="value:Q", tooltip=["time:T", "value", "score"]))
st.altair_chart(alt.layer(*layers).properties(height=300), width="stretch", key="lab_chart")
score_view = queries.downsample(plot, CHART_POINTS, value_col="score")
st.altair_chart(alt.Chart(score_view.to_pandas()).mark_line(color="gray").encode(
    x=base_x, y=alt.Y("score:Q", scale=alt.Scale(domain=[0, 1]))).properties(height=140), width="stretch",
    key="lab_scores")
st.caption("Orange: labelled anomaly windows · red: flagged points" if corpus is not None else "Red: flagged points")

st.subheader("Save as a fleet anomaly rule")
st.caption("The rule fires when the detector's score (metric `anomaly_score.<metric>`, written by the anomaly "
           "assets) reaches the threshold. Start in shadow mode: alerts are recorded, never notified.")
if flash := st.session_state.pop("lab_flash", None):
    st.success(flash, icon=":material/check:")
rule_tenant = tenant if corpus is None else ui.pick_tenant("lab_rule_tenant")
if rule_tenant is None:
    st.info("No tenant to save a rule for yet.")
    st.stop()
r = st.columns(4)
rule_id = r[0].text_input("Rule id", value=f"anomaly-{detector}-{metric or 'value'}".replace("_", "-"),
                          key="lab_rule_id")
rule_metric = r[1].text_input("Metric", value=metric or "value", key="lab_rule_metric",
                              help="the telemetry metric the detector scores")
rule_threshold = r[2].number_input("Score threshold", 0.0, 1.0, float(round(result.threshold, 4)), 0.01,
                                   key="lab_rule_threshold", format="%.4f")
rule_severity = r[3].selectbox("Severity", ["info", "warning", "critical"], index=1, key="lab_rule_severity")
q = st.columns([2, 2, 1], vertical_alignment="bottom")
rule_shadow = q[0].checkbox("Shadow mode (recommended first)", value=True, key="lab_rule_shadow")
only_device = q[1].checkbox(f"Only device {device_id}", value=False, key="lab_rule_one_device",
                            disabled=device_id is None)
if q[2].button("Save rule", key="lab_rule_save", icon=":material/save:"):
    import json

    from pulse.errors import UserError

    definition = {"id": rule_id.strip(), "kind": "anomaly", "metric": rule_metric.strip(),
                  "threshold": rule_threshold, "detector": detector, "severity": rule_severity,
                  "shadow": rule_shadow, "labels": {"detector_params": json.dumps(checked, sort_keys=True)},
                  "target": {"tenant": rule_tenant, **({"devices": [device_id]} if only_device and device_id else {})}}
    try:
        saved = actions.save_rule(definition, rule_tenant)
    except UserError as exc:
        st.error(f"Not saved: {exc}")
    else:
        queries.clear_caches()
        st.session_state["lab_flash"] = (f"Anomaly rule {saved['id']} saved for {rule_tenant}"
                                         f"{' in shadow mode' if rule_shadow else ''}.")
        st.rerun()
