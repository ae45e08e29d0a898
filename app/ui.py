"""Small rendering helpers shared by the pages (no reads here: those are in queries.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from app import queries

RANGES = {
    "Last 1 hour": timedelta(hours=1),
    "Last 6 hours": timedelta(hours=6),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "Last 365 days": timedelta(days=365),
}
ALL = "All tenants"


def current_tenant() -> str | None:
    """The pinned tenant, else the sidebar choice (None = all tenants)."""
    pinned = queries.viewer_tenant()
    if pinned:
        return pinned
    choice = st.session_state.get("app_tenant", ALL)
    return None if choice in (None, ALL) else choice


def time_window(label: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) for a preset; end is the next whole minute so cache keys stay stable."""
    now = now or datetime.now(UTC)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end - RANGES[label], end


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def pick_tenant(key: str) -> str | None:
    """A concrete tenant for device-level pages: the current one, or a page-local choice."""
    tenant = current_tenant()
    if tenant:
        return tenant
    options = [t["tenant_id"] for t in queries.tenants()]
    if not options:
        return None
    return st.selectbox("Tenant", options, key=key)


def require_tenant(key: str, empty_message: str) -> str:
    """``pick_tenant``, or a friendly message and the end of the page when there is no tenant."""
    tenant = pick_tenant(key)
    if tenant is None:
        st.info(empty_message)
        st.stop()
    return tenant
