-- Sharded ingest (ingest/shards.py): every worker that ever routed telemetry, so that when
-- one dies for good a survivor can adopt its persistent router session at the broker (a
-- dead member of a shared subscription keeps being allotted messages by Mosquitto).
create table if not exists ingest_workers (
    worker_id        text primary key,
    router_client_id text not null,
    started_at       timestamptz not null default now(),
    stopped_at       timestamptz              -- set by a clean stop or by the adopter; null while live or crashed
);

-- When a row was committed (the ingest transaction's time). The alert service records in
-- its snapshots the commit time of the last batch it evaluated and, on restart or when a
-- shard moves, replays exactly the rows committed after it, batch by batch in commit
-- order: the same order the live engine saw, so replayed transitions equal the stored
-- ones even when readings arrived out of timestamp order. A stable default: no rewrite.
alter table telemetry add column if not exists received_at timestamptz not null default now();
