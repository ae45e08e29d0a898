-- Notification delivery: the delivery log, durable escalation timers, route grouping
-- state and per-channel circuit breakers (written by alerting/notify.py).

-- One row per (alert event | group flush | escalation step, channel, recipient).
-- The idempotency key is unique: re-processing an outbox row or a timer never sends twice,
-- and receivers see the same key on every retry of one delivery.
create table if not exists deliveries (
    delivery_id      bigint generated always as identity primary key,
    idempotency_key  text not null unique,
    alert_id         text not null references alerts on delete cascade,
    event_id         bigint references alert_events on delete set null,
    source           text not null check (source in ('route', 'group', 'escalation', 'test')),
    route_id         text,
    policy_id        text,
    step_key         text,
    channel_id       text not null,
    recipient        text not null default '',     -- user id (escalation) or '' (channel target)
    address          text,                        -- that user's address on the channel, if any
    event            text not null,               -- firing | resolved | acknowledged | reminder | ...
    payload          jsonb not null,              -- the Notification, rebuilt for every attempt
    status           text not null default 'pending' check (status in ('pending', 'failed', 'sent', 'dead')),
    attempts         int not null default 0,
    next_attempt_at  timestamptz not null default now(),
    leased_by        text,                        -- worker sending it right now (lease ends at next_attempt_at)
    last_error       text,
    last_status_code int,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    sent_at          timestamptz
);
create index if not exists deliveries_due on deliveries (next_attempt_at) where status in ('pending', 'failed');
create index if not exists deliveries_alert on deliveries (alert_id, delivery_id);
create index if not exists deliveries_status on deliveries (status, updated_at desc);

-- Every attempt, successful or not.
create table if not exists delivery_attempts (
    attempt_id    bigint generated always as identity primary key,
    delivery_id   bigint not null references deliveries on delete cascade,
    attempt       int not null,
    channel_id    text not null,
    worker_id     text,
    at            timestamptz not null default now(),
    ok            boolean not null,
    status_code   int,
    latency_ms    double precision,
    error         text,                           -- already redacted by the channel
    retry_after_s double precision
);
create index if not exists delivery_attempts_delivery on delivery_attempts (delivery_id, attempt_id);

-- Durable escalation timers: one per (alert, policy). next_at is the wake-up time.
create table if not exists escalations (
    alert_id      text not null references alerts on delete cascade,
    policy_id     text not null,
    route_id      text,
    event_id      bigint,                         -- the event that started it
    triggered_at  timestamptz not null,
    next_at       timestamptz,
    last_step_at  timestamptz,                    -- steps at or before this instant are done
    loop          int not null default 0,
    level         int not null default -1,        -- last notified level (-1: none yet)
    steps_done    int not null default 0,
    stopped_at    timestamptz,
    stop_reason   text,                           -- acknowledged | resolved | completed
    updated_at    timestamptz not null default now(),
    primary key (alert_id, policy_id)
);
create index if not exists escalations_due on escalations (next_at) where stopped_at is null;

-- Route grouping (group_by / group_wait / group_interval / repeat_interval).
create table if not exists notification_groups (
    route_id        text not null,
    group_key       text not null,
    group_labels    jsonb not null default '{}'::jsonb,
    alert_ids       text[] not null default '{}',  -- every alert seen in the group
    pending_events  bigint[] not null default '{}', -- events not yet notified
    next_flush_at   timestamptz,
    last_flush_at   timestamptz,
    flushes         int not null default 0,
    updated_at      timestamptz not null default now(),
    primary key (route_id, group_key)
);
create index if not exists notification_groups_due on notification_groups (next_flush_at) where next_flush_at is not null;

-- Per-channel circuit breaker.
create table if not exists channel_state (
    channel_id           text primary key,
    consecutive_failures int not null default 0,
    open_until           timestamptz,             -- open while now() < open_until
    probe_until          timestamptz,             -- half-open: one probe in flight until then
    opened_count         int not null default 0,
    last_failure_at      timestamptz,
    last_success_at      timestamptz,
    updated_at           timestamptz not null default now()
);
