"""Operator actions on alerts through ``alerting.api`` — the same API the CLI uses.

The app never writes alert tables itself. If ``alerting.api`` is missing (a deployment
without the alerting package) the Alerts page stays read-only.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ACTIONS = {"ack": "acknowledge", "resolve": "resolve", "comment": "comment"}
DEFAULT_RESOLUTIONS = ("real_fault", "false_alarm", "maintenance", "other")


class ActionUnavailable(RuntimeError):
    pass


def load_api() -> ModuleType | None:
    try:
        return importlib.import_module("alerting.api")
    except ImportError:
        return None


def available() -> dict[str, bool]:
    api = load_api()
    return {action: api is not None and callable(getattr(api, fn, None)) for action, fn in ACTIONS.items()}


def resolutions() -> tuple[str, ...]:
    api = load_api()
    return tuple(getattr(api, "RESOLUTIONS", DEFAULT_RESOLUTIONS))


def perform(action: str, alert_id: str, user: str, text: str | None = None, resolution: str | None = None) -> dict:
    """One operator action in its own transaction (the API records the alert_events row).
    Raises ``pulse.errors.UserError`` for what the operator can fix (e.g. already resolved)."""
    api = load_api()
    if api is None or not callable(getattr(api, ACTIONS.get(action, ""), None)):
        raise ActionUnavailable(f"alerting.api has no {action!r} action; the Alerts page is read-only")
    from app import queries
    from pulse import db

    with db.connect(queries.database_url()) as conn:
        if action == "ack":
            result = api.acknowledge(conn, alert_id, user=user, comment=text)
        elif action == "resolve":
            result = api.resolve(conn, alert_id, user=user, reason=resolution or "other", comment=text)
        else:
            result = api.comment(conn, alert_id, user=user, text=text or "")
        conn.commit()
    return result
