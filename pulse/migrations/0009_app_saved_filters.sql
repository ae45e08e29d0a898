-- Streamlit fleet overview: named, saved device filters per tenant ('*' = the all-tenants view).
-- `filters` holds the fleet page's filter state: {search, sites, tags, statuses, metric_ranges: [{metric, min, max}]}.
create table if not exists app_saved_filters (
    tenant_id  text not null,
    name       text not null check (length(name) between 1 and 80),
    filters    jsonb not null,
    created_by text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, name)
);
