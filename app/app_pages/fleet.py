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
f1, f2, f3, f4 = st.columns([2, 2, 2, 2])
search = f1.text_input("Search id or name", key="fleet_search")
site_ids = f2.multiselect("Site", sorted(set(site_frame["site_id"].to_list())), key="fleet_sites")
tags = f3.multiselect("Tags", queries.tag_options(tenant), key="fleet_tags")
statuses = f4.multiselect("Status", list(queries.DEVICE_STATUSES), key="fleet_status")

table = queries.devices(tenant, search=search, site_ids=site_ids, tags=queries.parse_tags(tags), statuses=statuses)
st.caption(f"{table.height} device(s)")
if table.is_empty():
    st.info("No device matches these filters.")
else:
    st.dataframe(table, hide_index=True, key="fleet_table",
                 column_config={"last_seen": st.column_config.DatetimeColumn("last seen", format="YYYY-MM-DD HH:mm:ss")})
    st.download_button("Download CSV", table.write_csv(), file_name="pulse-fleet.csv", mime="text/csv",
                       key="fleet_csv", icon=":material/download:")
