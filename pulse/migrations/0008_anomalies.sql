-- Anomaly models, batch scores and operator feedback (assets/anomalies.py, detectors/feedback.py).

-- One row per trained model version of a (tenant, device type, metric). The fitted detector
-- is stored pickled (written and read only by Pulse's own assets); `threshold` is the raw
-- detector score that the calibrated score maps to the reference alert level 0.8 (feedback
-- raises it when false alarms dominate); `baseline` is the score distribution of the
-- training window (the drift check compares new scores with it).
create table if not exists anomaly_models (
    model_id     bigint generated always as identity primary key,
    tenant_id    text not null,
    device_type  text not null,                -- '' for devices without a type
    metric       text not null,
    version      int not null,
    detector     text not null,                -- registry name
    params       jsonb not null,
    threshold    double precision not null,
    train_start  timestamptz not null,
    train_end    timestamptz not null,
    n_points     bigint not null,
    n_devices    int not null,
    excluded_points bigint not null default 0, -- rows left out (maintenance / real-fault windows)
    baseline     jsonb not null,
    feedback     jsonb not null default '{}'::jsonb,
    model        bytea not null,
    is_current   boolean not null default true,
    created_at   timestamptz not null default now(),
    unique (tenant_id, device_type, metric, version)
);
create unique index if not exists anomaly_models_current
    on anomaly_models (tenant_id, device_type, metric) where is_current;

-- Scores of the hourly scoring asset (also in the lake: anomaly_scores/tenant=/date=/hour=HH.parquet).
-- `score` is calibrated (what `anomaly` rules compare), `raw` the detector's own score.
create table if not exists anomaly_scores (
    time      timestamptz not null,
    tenant_id text not null,
    device_id text not null,
    metric    text not null,
    score     double precision not null,
    raw       double precision not null,
    model_id  bigint not null,
    scored_at timestamptz not null default now()
);
create unique index if not exists anomaly_scores_series_time
    on anomaly_scores (tenant_id, device_id, metric, time desc);

do $$
begin
    if exists (select 1 from pg_extension where extname = 'timescaledb') then
        perform create_hypertable('anomaly_scores', 'time', chunk_time_interval => interval '7 days',
                                  create_default_indexes => false, if_not_exists => true);
    end if;
    create index if not exists anomaly_scores_time_brin on anomaly_scores using brin (time);
end
$$;

-- The delivery queue to the alert engine: one row per (device, metric) of each scoring run
-- with the peak calibrated score of the hour. The alert service (woken by
-- pg_notify('pulse_anomaly_scores')) feeds undelivered rows of the devices it evaluates to
-- its engine and stamps delivered_at; rows left undelivered are picked up after a restart.
create table if not exists anomaly_score_batches (
    batch_id     bigint generated always as identity primary key,
    tenant_id    text not null,
    device_id    text not null,
    metric       text not null,
    hour         timestamptz not null,
    peak         double precision not null,
    rows         int not null,
    model_id     bigint not null,
    created_at   timestamptz not null default now(),
    delivered_at timestamptz
);
create index if not exists anomaly_score_batches_pending on anomaly_score_batches (batch_id) where delivered_at is null;

-- Operator feedback on anomaly alerts: the resolve reason, else the latest ack whose comment
-- is one of the reasons ("false alarm", "real_fault", ...), of alerts raised by `anomaly`
-- rules. `peak` is the highest score the alert saw (calibrated for batch-scored rules).
create or replace view anomaly_labels as
select a.alert_id, a.tenant_id, a.rule_id, a.device_id, coalesce(d.device_type, '') as device_type,
       r.definition ->> 'metric' as metric,
       coalesce((r.definition ->> 'streaming')::boolean, false) as streaming,
       r.definition ->> 'detector' as rule_detector,
       a.started_at, a.resolved_at, a.shadow,
       coalesce(res.label, ack.label) as label,
       greatest(a.value, (select max(e.value) from alert_events e
                          where e.alert_id = a.alert_id and e.action = 'transition')) as peak
from alerts a
join config_objects r on r.kind = 'rule' and r.id = a.rule_id and r.definition ->> 'kind' = 'anomaly'
left join devices d on d.tenant_id = a.tenant_id and d.device_id = a.device_id
left join lateral (
    select replace(lower(trim(e.reason)), ' ', '_') as label from alert_events e
    where e.alert_id = a.alert_id and e.action = 'ack'
      and replace(lower(trim(e.reason)), ' ', '_') in ('real_fault', 'false_alarm', 'maintenance')
    order by e.event_id desc limit 1
) ack on true
cross join lateral (
    select case when a.resolution in ('real_fault', 'false_alarm', 'maintenance') then a.resolution end as label
) res
where coalesce(res.label, ack.label) is not null;
