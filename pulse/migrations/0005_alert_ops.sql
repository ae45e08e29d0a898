-- Alert operations: idempotent transition replay, recurring silences in a time zone,
-- and change notifications so the alert service picks up rule/device edits at once.

-- The engine's alert ids are deterministic: a replayed transition (restart catch-up,
-- retried batch) must not become a second audit row (nor a second notification).
create unique index if not exists alert_events_transition_once
    on alert_events (alert_id, at, from_state, to_state) where action = 'transition';

-- Recurrence (cron / RRULE) is read in this zone (IANA name; NULL = UTC).
alter table silences add column if not exists time_zone text;

-- `pulse config apply` (or any writer) changing rules or the fleet wakes the alert service.
create or replace function pulse_config_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('pulse_config', tg_table_name);
    return null;
end
$$;

drop trigger if exists config_objects_notify on config_objects;
create trigger config_objects_notify after insert or update or delete on config_objects
    for each statement execute function pulse_config_changed();

drop trigger if exists devices_notify on devices;
create trigger devices_notify after insert or update or delete on devices
    for each statement execute function pulse_config_changed();
