"""pulse.sharding: stable shard function, balance, rendezvous assignment with minimal movement."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pulse.sharding import (
    assign,
    emqx_rule_sql,
    moved_shards,
    owner_of,
    parse_shard_topic,
    shard_client_id,
    shard_filter,
    shard_of,
    shard_topic,
)

ROOT = Path(__file__).resolve().parents[2]
WORKERS = [f"pulse-ingest-{i}" for i in range(6)]


def test_golden_values_pin_the_hash():
    # The broker (EMQX rule SQL) computes the same function: changing it silently remaps
    # every device between broker and workers, so the values are pinned.
    assert shard_of("acme", "pump-0001", 64) == 1
    assert shard_of("acme", "pump-0002", 64) == 7
    assert shard_of("sim", "meter-00042", 64) == 62
    assert shard_of("Ωtenant", "dev-ü", 64) == 40
    assert shard_of("acme", "pump-0001", 1024) == 321


def test_stable_across_processes_with_different_hash_seeds():
    code = "from pulse.sharding import shard_of; print([shard_of('t1', f'd{i}', 97) for i in range(200)])"
    outs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60, check=True)
        outs.add(res.stdout.strip())
    assert len(outs) == 1
    assert outs.pop() == str([shard_of("t1", f"d{i}", 97) for i in range(200)])


@pytest.mark.parametrize("shards", [8, 64, 256])
def test_balance_within_15_percent_over_100k_devices(shards):
    counts = Counter(shard_of(f"tenant-{i % 7}", f"device-{i:06d}", shards) for i in range(100_000))
    assert set(counts) == set(range(shards))
    mean = 100_000 / shards
    worst = max(abs(c - mean) / mean for c in counts.values())
    assert worst <= 0.15, worst


def test_matches_the_emqx_rule_arithmetic():
    """Emulate the functions the rule SQL uses (sha256 → hex, hexstr2bin, subbits(bin, 1, 32)
    = first 32 bits unsigned big-endian, mod) and compare with shard_of."""
    sql = emqx_rule_sql(64)
    assert "mod(subbits(hexstr2bin(sha256(" in sql and ", 1, 32), 64) AS shard" in sql
    assert "concat(concat(nth(3, split(topic, '/')), '/'), nth(4, split(topic, '/')))" in sql
    assert 'FROM\n  "pulse/v1/+/+/telemetry"' in sql

    def emqx(topic: str) -> int:
        parts = [p for p in topic.split("/") if p]  # EMQX split/2 drops empty parts
        key = parts[2] + "/" + parts[3]
        hexstr = hashlib.sha256(key.encode()).hexdigest()
        bits32 = int.from_bytes(bytes.fromhex(hexstr), "big") >> (256 - 32)
        return bits32 % 64

    for i in range(2000):
        tenant, device = f"t{i % 5}", f"dev-{i}"
        assert emqx(f"pulse/v1/{tenant}/{device}/telemetry") == shard_of(tenant, device, 64)


def test_rejects_bad_input():
    for bad in (0, -1, 1 << 17, True, 2.0):
        with pytest.raises(ValueError):
            shard_of("t", "d", bad)
    for tenant, device in (("", "d"), ("t", ""), ("a/b", "d"), ("t", "d+"), ("t", "#")):
        with pytest.raises(ValueError):
            shard_of(tenant, device, 8)
    with pytest.raises(ValueError):
        assign([], 8)
    with pytest.raises(ValueError):
        assign(["w", ""], 8)


def test_topics_round_trip():
    assert shard_topic(17, "acme", "pump-1") == "pulse/v1s/17/acme/pump-1/telemetry"
    assert parse_shard_topic("pulse/v1s/17/acme/pump-1/telemetry") == (17, "acme", "pump-1")
    assert shard_filter(17) == "pulse/v1s/17/+/+/telemetry"
    assert shard_client_id(3) == "pulse-ingest-shard-3"
    for bad in ("pulse/v1/acme/pump-1/telemetry", "pulse/v1s/x/acme/pump-1/telemetry",
                "pulse/v1s/017/acme/pump-1/telemetry", "pulse/v1s/1/acme/pump-1/other", "pulse/v1s/1//d/telemetry"):
        with pytest.raises(ValueError):
            parse_shard_topic(bad)


def test_assign_covers_every_shard_once_and_ignores_order():
    a = assign(WORKERS, 256)
    assert set(a) == set(WORKERS)
    owned = sorted(s for ss in a.values() for s in ss)
    assert owned == list(range(256))
    assert assign(list(reversed(WORKERS)) + WORKERS[:2], 256) == a
    for w, ss in a.items():
        assert all(owner_of(s, WORKERS) == w for s in ss)


def test_assign_balance_with_enough_virtual_shards():
    # Rendezvous balances statistically: with >= 256 shards per worker every worker is
    # within ±15% of its fair share (docs/scaling.md sizes for that headroom).
    for n in (2, 3, 4, 6):
        workers = [f"pulse-ingest-{i}" for i in range(n)]
        sizes = [len(v) for v in assign(workers, 256 * n).values()]
        assert max(abs(s - 256) / 256 for s in sizes) <= 0.15, (n, sizes)


@pytest.mark.parametrize("dead", WORKERS)
def test_only_the_dead_workers_shards_move(dead):
    before = assign(WORKERS, 512)
    after = assign([w for w in WORKERS if w != dead], 512)
    moves = moved_shards(before, after)
    assert set(moves) == set(before[dead])  # exactly the dead worker's shards, nothing else
    assert all(old == dead and new != dead for old, new in moves.values())
    for w in WORKERS:
        if w != dead:
            assert set(before[w]) <= set(after[w])
    # they spread over the survivors rather than landing on one
    assert len({new for _, new in moves.values()}) == len(WORKERS) - 1


def test_a_new_worker_only_takes_shards():
    before = assign(WORKERS, 512)
    after = assign(WORKERS + ["pulse-ingest-6"], 512)
    moves = moved_shards(before, after)
    assert moves and all(new == "pulse-ingest-6" for _, new in moves.values())
    assert 0.5 * 512 / 7 <= len(moves) <= 1.5 * 512 / 7
