-- Tenants, sites, devices and their live state.
create table if not exists tenants (
    tenant_id     text primary key check (tenant_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name          text not null,
    time_zone     text not null default 'UTC',
    -- trusted brokers: telemetry from an unknown device of this tenant registers it
    auto_register boolean not null default false,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

create table if not exists sites (
    tenant_id  text not null references tenants on delete cascade,
    site_id    text not null check (site_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    name       text not null,
    time_zone  text,
    latitude   double precision check (latitude between -90 and 90),
    longitude  double precision check (longitude between -180 and 180),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, site_id)
);

create table if not exists devices (
    tenant_id        text not null references tenants on delete cascade,
    device_id        text not null check (device_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'),
    site_id          text,
    device_type      text,
    name             text,
    tags             jsonb not null default '{}'::jsonb,
    token_hash       bytea unique,          -- sha256 of the bearer token; the token is shown once
    token_created_at timestamptz,
    status           text not null default 'active' check (status in ('active', 'disabled')),
    auto_registered  boolean not null default false,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    primary key (tenant_id, device_id),
    foreign key (tenant_id, site_id) references sites (tenant_id, site_id) on delete set null (site_id)
);
create index if not exists devices_tags on devices using gin (tags);
create index if not exists devices_site on devices (tenant_id, site_id);

create table if not exists device_state (
    tenant_id        text not null,
    device_id        text not null,
    last_seen        timestamptz not null,   -- newest reading time
    last_received_at timestamptz not null,   -- when the newest batch was committed
    last_values      jsonb not null default '{}'::jsonb,
    rows             bigint not null default 0,  -- telemetry rows received
    primary key (tenant_id, device_id),
    foreign key (tenant_id, device_id) references devices on delete cascade
);

-- Everything rejected on the way in, with the raw payload: nothing is dropped silently.
create table if not exists quarantine (
    id          bigint generated always as identity primary key,
    received_at timestamptz not null default now(),
    transport   text not null,               -- mqtt | http | import
    tenant_id   text,
    device_id   text,
    topic       text,
    reason      text not null,
    detail      text,
    payload     bytea not null
);
create index if not exists quarantine_reason on quarantine (reason, received_at desc);
create index if not exists quarantine_received on quarantine (received_at desc);
