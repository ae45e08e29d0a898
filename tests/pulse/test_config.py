import psycopg
import pytest

from pulse import config
from pulse.errors import UserError

GOOD = """
tenants:
  - id: acme
    name: Acme Water
    time_zone: Europe/Berlin
    sites:
      - id: berlin-1
        name: Berlin plant
        location: {lat: 52.52, lon: 13.40}
    devices:
      - id: pump-0001
        site: berlin-1
        type: pump
        tags: {fw: "1.4.2"}
      - id: pump-0002
        site: berlin-1
        type: pump
  - id: globex
    auto_register: true
"""


def test_apply_is_declarative_and_idempotent(any_store_url):
    cfg = config.loads(GOOD)
    with psycopg.connect(any_store_url) as conn:
        first = config.apply(conn, cfg)
        assert (first["tenants"], first["sites"], first["devices"]) == (2, 1, 2)
        assert {t.device_id for t in first["tokens"]} == {"pump-0001", "pump-0002"}
        second = config.apply(conn, cfg)
        assert second["tokens"] == []  # existing devices keep their tokens
        assert conn.execute("select auto_register from tenants where tenant_id='globex'").fetchone()[0]
        smaller = config.loads(GOOD.replace("      - id: pump-0002\n        site: berlin-1\n        type: pump\n", ""))
        assert config.apply(conn, smaller, prune=True)["pruned"] == 1
        assert conn.execute("select count(*) from devices").fetchone()[0] == 1


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("site: berlin-1\n        type: pump\n        tags", "site: paris\n        type: pump\n        tags"),
     "tenants[0].devices[0].site (line 12): 'paris' is not one of this tenant's sites"),
    (GOOD.replace("Europe/Berlin", "Mars/Olympus"), "tenants[0].time_zone (line 5): 'Mars/Olympus' is not an IANA"),
    (GOOD.replace("lat: 52.52", "lat: 152.52"), "tenants[0].sites[0].location.lat (line 9)"),
    (GOOD.replace("type: pump\n        tags", "typo: pump\n        tags"), "tenants[0].devices[0].typo (line 13): Extra inputs"),
    (GOOD.replace("id: pump-0002", "id: pump-0001"), "device id 'pump-0001' is declared twice"),
    (GOOD.replace("id: acme", "id: Acme!"), "tenants[0].id (line 3)"),
    ("tenants: [", "not valid YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
])
def test_errors_name_the_yaml_path(text, expected):
    with pytest.raises(UserError) as info:
        config.loads(text, source="fleet.yaml")
    assert expected in str(info.value), str(info.value)
    assert str(info.value).startswith("fleet.yaml")


def test_bad_file_changes_nothing(pg_url):
    with psycopg.connect(pg_url) as conn:
        config.apply(conn, config.loads(GOOD))
    with pytest.raises(UserError):
        config.loads(GOOD.replace("Europe/Berlin", "Nowhere/Land"))
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("select time_zone from tenants where tenant_id='acme'").fetchone()[0] == "Europe/Berlin"


def test_schema_is_json_schema():
    schema = config.json_schema()
    assert schema["title"] == "PulseConfig"
    assert "tenants" in schema["properties"]
