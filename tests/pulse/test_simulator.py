from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from pulse import simulate, simulator

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_series_is_deterministic_seasonal_and_faults_apply():
    fleet = simulator.make_fleet(3, seed=1)
    dev = fleet[0]
    grid = simulator.time_grid(T0, T0 + timedelta(days=2), 60)
    metric = dev.metrics[0]
    a = simulator.series(dev, metric, grid)
    assert np.array_equal(a, simulator.series(dev, metric, grid))  # same seed, same data
    assert np.isfinite(a).all()
    assert a.max() - a.min() > metric.daily_amp  # the daily cycle is there
    spike = simulator.Fault(dev.tenant_id, dev.device_id, metric.name, "spike", T0 + timedelta(hours=5),
                            T0 + timedelta(hours=5, minutes=3), 6.0)
    b = simulator.series(dev, metric, grid, [spike])
    inside = (grid >= spike.start.timestamp()) & (grid < spike.end.timestamp())
    assert inside.sum() == 3
    assert (np.abs(b[inside] - a[inside]) > 5 * metric.noise_sd).all()
    assert np.array_equal(a[~inside], b[~inside])


def test_ground_truth_round_trips(tmp_path):
    fleet = simulator.make_fleet(20, seed=3)
    faults = simulator.plan_faults(fleet, T0, T0 + timedelta(days=7), per_device_day=0.2, seed=3)
    assert faults and {f.kind for f in faults} <= set(simulator.FAULT_KINDS)
    assert all(f.start < f.end for f in faults)
    path = tmp_path / "truth.jsonl"
    simulator.write_truth(faults, path)
    assert simulator.read_truth(path) == faults


def test_backfill_writes_exactly_the_simulated_rows_and_is_rerunnable(any_store_url):
    fleet = simulator.make_fleet(4, tenants=("sim",), seed=5)
    end = T0 + timedelta(hours=6)
    offline = simulator.Fault("sim", fleet[0].device_id, None, "offline", T0 + timedelta(hours=1),
                              T0 + timedelta(hours=2))
    with psycopg.connect(any_store_url) as conn:
        simulate.provision(conn, fleet)
        result = simulate.backfill(conn, fleet, T0, end, interval_s=60, faults=[offline], dropout=0.0)
        expected = 6 * 60 * 4 * 5 - 60 * 5  # minus the offline hour of one device
        assert result.rows == expected
        assert conn.execute("select count(*) from telemetry").fetchone()[0] == expected
        gap = conn.execute(
            "select count(*) from telemetry where device_id = %s and time >= %s and time < %s",
            (fleet[0].device_id, offline.start, offline.end)).fetchone()[0]
        assert gap == 0
        simulate.backfill(conn, fleet, T0, end, interval_s=60, faults=[offline], dropout=0.0)
        assert conn.execute("select count(*) from telemetry").fetchone()[0] == expected  # no duplicates
        state = conn.execute("select count(*), min(last_seen) from device_state").fetchone()
        assert state[0] == 4 and state[1] == end - timedelta(minutes=1)


def test_live_readings_are_finite_and_counters_grow():
    dev = next(d for d in simulator.make_fleet(3, seed=2) if d.device_type == "meter")
    state = simulator.LiveState()
    first = simulator.live_reading(dev, state, T0)
    later = simulator.live_reading(dev, state, T0 + timedelta(hours=1))
    assert all(np.isfinite(v) for v in later.values())
    assert later["energy_kwh"] > first["energy_kwh"]
    assert state.seq == 2
