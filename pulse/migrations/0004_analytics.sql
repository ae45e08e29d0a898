-- Analytics (Dagster) bookkeeping: which tenant-hours are in the Parquet lake, and the
-- results of data-quality checks so the app can show them without asking Dagster.
create table if not exists lake_exports (
    tenant_id   text not null,
    hour        timestamptz not null,
    rows        bigint not null,            -- rows in the Parquet file
    db_rows     bigint not null,            -- rows read from the hot store for this export
    ledger_rows bigint,                     -- ingest_hours.rows seen in the export's snapshot
    path        text not null,              -- relative to the lake dir
    bytes       bigint not null,
    exported_at timestamptz not null,       -- start of the export's read snapshot
    retained_at timestamptz,                -- hot rows dropped by retention; the lake is the source now
    primary key (tenant_id, hour)
);
create index if not exists lake_exports_hour on lake_exports (hour);

create table if not exists asset_check_results (
    id            bigint generated always as identity primary key,
    asset_key     text not null,
    check_name    text not null,
    partition_key text,
    passed        boolean not null,
    severity      text not null,
    metadata      jsonb not null default '{}'::jsonb,
    run_id        text,
    checked_at    timestamptz not null default now()
);
create index if not exists asset_check_results_recent
    on asset_check_results (asset_key, check_name, partition_key, checked_at desc);
