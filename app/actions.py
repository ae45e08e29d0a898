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


def silence(alert: dict, user: str, duration_s: float, comment: str | None = None):
    """Silence this alert's tenant + rule (+ device) for ``duration_s`` from now, through
    ``alerting.api.add_silence`` (``created_by`` = the acting user). Returns the Silence."""
    from datetime import UTC, datetime, timedelta

    api = load_api()
    if api is None or not callable(getattr(api, "add_silence", None)):
        raise ActionUnavailable("alerting.api has no silence action; the Alerts page is read-only")
    from app import queries
    from pulse import db
    from pulse.errors import UserError

    if not user or not user.strip():
        raise UserError("an acting user is required")
    if duration_s <= 0:
        raise UserError("a silence needs a positive duration")
    matchers = api.matcher_from_options(tenant=alert["tenant_id"], rule=alert["rule_id"],
                                        device=alert.get("device_id") or None)
    now = datetime.now(UTC)
    with db.connect(queries.database_url()) as conn:
        return api.add_silence(conn, matchers=matchers, starts_at=now, ends_at=now + timedelta(seconds=duration_s),
                               created_by=user.strip(), comment=comment)


def parse_rule(definition: dict | str, tenant: str) -> dict:
    """Validate one rule (a dict, or YAML text of one rule / a ``rules:`` list holding one) for
    ``tenant``; returns its canonical definition. A rule without ``target.tenant`` is scoped to
    ``tenant``; a rule for another tenant is refused. Raises UserError with the field path."""
    import yaml
    from pydantic import ValidationError

    from alerting.rules import format_validation_error, load_rules
    from pulse.errors import UserError

    data = definition
    if isinstance(definition, str):
        try:
            data = yaml.safe_load(definition)
        except yaml.YAMLError as exc:
            raise UserError(f"not valid YAML: {exc}") from None
    if isinstance(data, dict) and "rules" in data:
        data = data["rules"]
    if isinstance(data, list):
        if len(data) != 1:
            raise UserError(f"write exactly one rule here (got {len(data)})")
        data = data[0]
    if not isinstance(data, dict):
        raise UserError("a rule is a mapping with at least id and kind")
    target = dict(data.get("target") or {})
    if target.get("tenant") not in (None, tenant):
        raise UserError(f"target.tenant is {target['tenant']!r}; this rule lab works on tenant {tenant!r}")
    data = {**data, "target": {**target, "tenant": tenant}}
    try:
        (rule,) = load_rules({"rules": [data]})
    except ValidationError as exc:
        raise UserError(format_validation_error(exc)) from None
    return rule.model_dump(mode="json", by_alias=True, exclude_none=True)


def save_rule(definition: dict, tenant: str) -> dict:
    """Store one rule the way ``pulse config apply`` does (``alerting.config.apply`` of a config
    holding just this rule: upserted in ``config_objects``, version bumped when it changed; the
    live engine reloads it). Refuses to overwrite a rule id that belongs to another tenant."""
    from alerting import config
    from app import queries
    from pulse import db
    from pulse.errors import UserError

    rule = parse_rule(definition, tenant)
    exists, owner = queries.rule_owner(rule["id"])
    if exists and owner != tenant:
        raise UserError(f"rule id {rule['id']!r} is already used by another scope; choose another id")
    cfg = config.PlatformConfig.model_validate({"rules": [rule]})
    with db.connect(queries.database_url()) as conn:
        config.apply(conn, cfg)
    return rule


def redrive(delivery_id: int, user: str, tenant: str | None = None) -> list[int]:
    """Re-drive one failed or dead delivery with ``alerting.delivery.redrive`` — the function
    ``pulse deliveries retry`` calls (fresh attempt budget, attempt history kept, workers woken).
    That function records no actor, so the same transaction adds a comment by ``user`` to the
    alert's audit trail through ``alerting.api.comment``. Raises UserError when the delivery is
    not visible to the viewer or not failed/dead."""
    from alerting import delivery
    from app import queries
    from pulse import db
    from pulse.errors import UserError

    if not user or not user.strip():
        raise UserError("an acting user is required")
    row = queries.delivery_visible(tenant, delivery_id)
    if row is None:
        raise UserError(f"no delivery with id {delivery_id}")
    if row["status"] not in queries.REDRIVABLE:
        raise UserError(f"delivery {delivery_id} is {row['status']}; only dead or failed deliveries can be retried")
    api = load_api()
    with db.connect(queries.database_url()) as conn:
        with conn.transaction():
            ids = delivery.redrive(conn, delivery_id=delivery_id)
            if not ids:  # changed under us (a worker sent it, or someone re-drove it first)
                raise UserError(f"delivery {delivery_id} is no longer failed or dead; nothing to re-drive")
            if api is not None and callable(getattr(api, "comment", None)):
                api.comment(conn, row["alert_id"], user=user.strip(),
                            text=f"re-drove delivery {delivery_id} ({row['channel_id']}, was {row['status']})")
    return ids
