-- SLA reports: per-tenant report settings (targets, subscribers) and a ledger of every run.

-- One row per tenant; `settings` is validated by assets.sla.ReportSettings when read/written
-- (target_pct, formats, folder, email {channel, recipients}, webhook {channel, link_base}).
create table if not exists report_settings (
    tenant_id  text primary key,
    settings   jsonb not null default '{}'::jsonb,
    updated_at timestamptz not null default now()
);

-- Every report run (CLI, Dagster, API): what was built, where it went, how delivery went.
create table if not exists report_runs (
    run_id       bigint generated always as identity primary key,
    report       text not null default 'sla',
    tenant_id    text not null,
    period       text not null,                  -- 2026-11 (monthly) or 2026-11-05 (daily), tenant-local
    period_start timestamptz not null,
    period_end   timestamptz not null,
    formats      text[] not null,
    path         text,                           -- directory holding the files of this run
    files        jsonb not null default '[]'::jsonb,
    started_at   timestamptz not null default now(),
    finished_at  timestamptz,
    status       text not null default 'running'
                 check (status in ('running', 'succeeded', 'delivery_failed', 'failed')),
    delivered_to jsonb not null default '[]'::jsonb,  -- [{kind, target, ok, error}]
    summary      jsonb,
    error        text,
    triggered_by text                            -- cli | dagster:<run id> | ...
);
create index if not exists report_runs_tenant on report_runs (tenant_id, report, period, started_at desc);
