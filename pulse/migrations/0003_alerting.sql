-- Alerting: declarative objects, alerts with their audit trail, and the notification outbox.

-- Rules, channels, routes, escalation policies, schedules and users as applied by
-- `pulse config apply` (validated there; services load them from here).
create table if not exists config_objects (
    kind       text not null check (kind in ('rule', 'channel', 'route', 'escalation_policy', 'schedule', 'user')),
    id         text not null,
    position   int not null default 0,          -- routes are ordered
    definition jsonb not null,
    version    int not null default 1,
    updated_at timestamptz not null default now(),
    primary key (kind, id)
);

-- One row per alert (one open alert per fingerprint; repeats bump count/last_seen).
create table if not exists alerts (
    alert_id        text primary key,           -- the engine's deterministic id
    fingerprint     text not null,              -- tenant/rule/subject
    tenant_id       text not null,
    rule_id         text not null,
    subject         text not null,              -- device id, or group:<key> for fleet rules
    device_id       text,
    site_id         text,
    severity        text not null,
    state           text not null check (state in ('pending', 'firing', 'acknowledged', 'flapping', 'resolved')),
    summary         text,
    value           double precision,
    labels          jsonb not null default '{}'::jsonb,
    children        jsonb,                      -- fleet alerts: the devices in breach
    count           int not null default 1,
    shadow          boolean not null default false,
    started_at      timestamptz not null,
    last_seen       timestamptz not null,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    resolved_by     text,
    resolution      text,                       -- operator's reason: real_fault | false_alarm | maintenance | ...
    updated_at      timestamptz not null default now()
);
create unique index if not exists alerts_one_open on alerts (fingerprint) where state <> 'resolved';
create index if not exists alerts_tenant_state on alerts (tenant_id, state, started_at desc);
create index if not exists alerts_rule on alerts (rule_id, started_at desc);

-- Every transition and every operator action: the audit trail from breach to page to ack.
create table if not exists alert_events (
    event_id   bigint generated always as identity primary key,
    alert_id   text not null references alerts on delete cascade,
    at         timestamptz not null,            -- event time (reading or timer deadline)
    from_state text,
    to_state   text,
    action     text not null,                   -- transition | ack | resolve | comment | reminder
    actor      text,                            -- engine | user name
    reason     text,
    value      double precision,
    notify     boolean not null default false,
    silenced   boolean not null default false,
    detail     jsonb,
    created_at timestamptz not null default now()
);
create index if not exists alert_events_alert on alert_events (alert_id, event_id);

-- Transactional outbox: written in the same transaction as the alert_events row it
-- announces; the delivery worker claims rows with FOR UPDATE SKIP LOCKED.
create table if not exists notification_outbox (
    outbox_id    bigint generated always as identity primary key,
    event_id     bigint not null references alert_events on delete cascade,
    alert_id     text not null,
    created_at   timestamptz not null default now(),
    available_at timestamptz not null default now(),
    processed_at timestamptz
);
create index if not exists notification_outbox_pending on notification_outbox (available_at) where processed_at is null;

-- Silences and maintenance windows: label matchers over a time range, optionally recurring.
create table if not exists silences (
    silence_id  bigint generated always as identity primary key,
    tenant_id   text,
    matchers    jsonb not null,                 -- {"label": "value" | ["v1", "v2"] | "~regex"}
    starts_at   timestamptz not null,
    ends_at     timestamptz not null,
    recurrence  text,                           -- RRULE or cron; each occurrence lasts `duration`
    duration_s  double precision,
    comment     text,
    created_by  text,
    created_at  timestamptz not null default now(),
    expired_at  timestamptz,
    check (ends_at > starts_at)
);
create index if not exists silences_active on silences (ends_at) where expired_at is null;

-- Engine state that must survive a restart (pending timers, flapping history, windows).
create table if not exists engine_snapshots (
    partition_key text primary key,             -- tenant (engines are partitioned by tenant)
    taken_at      timestamptz not null,
    snapshot      jsonb not null
);
