"""Pulse fleet analytics: the Streamlit entrypoint (navigation + the frame around pages).

Run with ``pulse app`` or ``streamlit run app/streamlit_app.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts app/ (not the project root) on sys.path; pages import `app.*`.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from app import queries, ui  # noqa: E402

st.set_page_config(page_title="Pulse fleet analytics", page_icon=":material/monitoring:", layout="wide")

PAGES = [
    st.Page("app_pages/fleet.py", title="Fleet overview", icon=":material/dashboard:", default=True),
    st.Page("app_pages/device.py", title="Device explorer", icon=":material/sensors:", url_path="device"),
    st.Page("app_pages/health.py", title="Data health", icon=":material/health_and_safety:", url_path="health"),
    st.Page("app_pages/alerts.py", title="Alerts", icon=":material/notifications:", url_path="alerts"),
    st.Page("app_pages/sla.py", title="SLA reports", icon=":material/summarize:", url_path="sla"),
    st.Page("app_pages/lab.py", title="Detector lab", icon=":material/science:", url_path="lab"),
    st.Page("app_pages/rules.py", title="Rule lab", icon=":material/rule:", url_path="rules"),
]
page = st.navigation(PAGES)

with st.sidebar:
    pinned = queries.viewer_tenant()
    if pinned:
        st.caption(f"Tenant: **{pinned}**")
    else:
        try:
            options = [ui.ALL] + [t["tenant_id"] for t in queries.tenants()]
        except queries.StoreUnavailable:
            options = [ui.ALL]
        st.selectbox("Tenant", options, key="app_tenant")
    if st.button("Refresh data", key="app_refresh", icon=":material/refresh:"):
        queries.clear_caches()

try:
    page.run()
except queries.StoreUnavailable as exc:
    st.error(f"The data store is unreachable. {exc}", icon=":material/cloud_off:")
    st.caption("Check PULSE_DATABASE_URL (or start the services with scripts/services.sh), then reload.")
except queries.TenantAccessDenied as exc:
    st.error(str(exc), icon=":material/lock:")
