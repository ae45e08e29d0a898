"""Fleet overview: KPIs, sites on a map, the device table with filters and CSV export."""

import streamlit as st

from app import queries, ui

st.title("Fleet overview")
tenant = ui.current_tenant()
kpis = queries.fleet_kpis(tenant)

if kpis["devices"] == 0:
    st.info("No devices yet. Register devices with `pulse devices add` / `pulse devices import`, "
            "or run `pulse demo` to simulate a fleet.", icon=":material/inventory_2:")
    st.stop()

c = st.columns(5)
c[0].metric("Devices online", kpis["online"], help=f"seen within {queries.ONLINE_WITHIN}")
c[1].metric("Offline", kpis["offline"])
c[2].metric("Never seen", kpis["never_seen"])
c[3].metric("Ingest rate", f"{kpis['ingest_rows_per_s']:,.1f} rows/s", help="from ingest_hours, last ~1-2 hours")
c[4].metric("Data freshness", ui.age(kpis["freshness_s"]), help="age of the newest reading")

open_alerts = kpis["open_alerts"]
st.subheader("Open alerts")
if open_alerts:
    sev_cols = st.columns(max(len(open_alerts), 1))
    for col, (sev, n) in zip(sev_cols, open_alerts.items()):
        col.metric(sev, n)
else:
    st.caption("No open alerts.")

st.subheader("Sites")
site_frame = queries.sites(tenant)
located = site_frame.drop_nulls(["latitude", "longitude"])
if located.is_empty():
    st.caption("No site has coordinates yet (set latitude/longitude in the site configuration).")
else:
    st.map(located.select("latitude", "longitude", "site_id", "devices").to_pandas(),
           latitude="latitude", longitude="longitude", size=200)

st.subheader("Devices")
site_options = sorted(set(site_frame["site_id"].to_list()))
tag_choices = queries.tag_options(tenant)
metric_choices = queries.metric_options(tenant)
saved = queries.saved_filters(tenant)


def _load_filter() -> None:
    """Put a saved filter into the widgets (dropping values this scope no longer offers)."""
    f = saved.get(st.session_state.get("fleet_saved"), {})
    st.session_state["fleet_search"] = f.get("search", "")
    st.session_state["fleet_sites"] = [x for x in f.get("sites", []) if x in site_options]
    st.session_state["fleet_tags"] = [x for x in f.get("tags", []) if x in tag_choices]
    st.session_state["fleet_status"] = [x for x in f.get("statuses", []) if x in queries.DEVICE_STATUSES]
    ranges = [r for r in f.get("metric_ranges", []) if r[0] in metric_choices]
    st.session_state["fleet_range_metrics"] = [r[0] for r in ranges]
    for m, lo, hi in ranges:
        st.session_state[f"fleet_range_{m}_lo"], st.session_state[f"fleet_range_{m}_hi"] = lo, hi
    st.session_state["fleet_flash"] = f"Loaded filter “{st.session_state.get('fleet_saved')}”."


if saved:
    s1, s2, s3 = st.columns([3, 1, 1], vertical_alignment="bottom")
    s1.selectbox("Saved filter", list(saved), key="fleet_saved")
    s2.button("Load", key="fleet_filter_load", on_click=_load_filter, icon=":material/filter_alt:")
    if s3.button("Delete", key="fleet_filter_delete", icon=":material/delete:"):
        queries.delete_filter(tenant, st.session_state["fleet_saved"])
        st.session_state["fleet_flash"] = f"Deleted filter “{st.session_state['fleet_saved']}”."
        st.rerun()
if flash := st.session_state.pop("fleet_flash", None):
    st.success(flash, icon=":material/check:")

f1, f2, f3, f4 = st.columns([2, 2, 2, 2])
search = f1.text_input("Search id or name", key="fleet_search")
site_ids = f2.multiselect("Site", site_options, key="fleet_sites")
tags = f3.multiselect("Tags", tag_choices, key="fleet_tags")
statuses = f4.multiselect("Status", list(queries.DEVICE_STATUSES), key="fleet_status")
range_metrics = st.multiselect("Metric ranges (last value between min and max)", metric_choices,
                               key="fleet_range_metrics", help="from each device's last reported values")
ranges = []
if range_metrics:
    cols = st.columns(min(len(range_metrics), 3) * 2)
    for i, m in enumerate(range_metrics):
        lo = cols[(2 * i) % len(cols)].number_input(f"{m} ≥", value=None, key=f"fleet_range_{m}_lo", format="%g")
        hi = cols[(2 * i + 1) % len(cols)].number_input(f"{m} ≤", value=None, key=f"fleet_range_{m}_hi", format="%g")
        if lo is not None and hi is not None and lo > hi:
            st.warning(f"{m}: the minimum {lo:g} is above the maximum {hi:g}; no device can match.")
        ranges.append((m, lo, hi))

table = queries.devices(tenant, search=search, site_ids=site_ids, tags=queries.parse_tags(tags), statuses=statuses,
                        metric_ranges=ranges)
st.caption(f"{table.height} device(s)")
if table.is_empty():
    st.info("No device matches these filters.")
else:
    st.dataframe(table, hide_index=True, key="fleet_table",
                 column_config={"last_seen": st.column_config.DatetimeColumn("last seen", format="YYYY-MM-DD HH:mm:ss")})
    st.download_button("Download CSV", table.write_csv(), file_name="pulse-fleet.csv", mime="text/csv",
                       key="fleet_csv", icon=":material/download:")

with st.popover("Save this filter", icon=":material/bookmark_add:"):
    name = st.text_input("Name", key="fleet_filter_name", max_chars=80)
    if st.button("Save filter", key="fleet_filter_save"):
        if not name.strip():
            st.warning("Give the filter a name.")
        else:
            queries.save_filter(tenant, name, {"search": search, "sites": site_ids, "tags": tags,
                                               "statuses": statuses, "metric_ranges": [list(r) for r in ranges]})
            st.session_state["fleet_flash"] = f"Saved filter “{name.strip()}”."
            st.rerun()
