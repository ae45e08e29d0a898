"""Hash-sharding of devices over ingest workers (see docs/scaling.md).

A device's alert-rule state (windows, ``for`` timers, flapping history) lives in the
memory of ONE ingest worker, so every reading of a device must reach the same worker.
Devices are hashed to a fixed number of *virtual shards* (``shards``, e.g. 64, never
changed in a running system); shards are assigned to the live workers by rendezvous
(highest-random-weight) hashing, so when a worker leaves only its own shards move.

* :func:`shard_of` is the one device → shard function. It is computed the same way by
  the broker (EMQX rule SQL from :func:`emqx_rule_sql`, which republishes
  ``pulse/v1/{tenant}/{device}/telemetry`` to :func:`shard_topic`) and by Pulse, so it
  uses only operations EMQX's rule SQL has: SHA-256 of ``"{tenant}/{device}"``, the first
  32 bits as an unsigned big-endian integer, modulo ``shards``. It never uses Python's
  ``hash()`` (randomised per process).
* :func:`assign` maps shards to workers; :func:`moved_shards` tells what a membership
  change moves.
* Topic helpers: :func:`shard_topic`, :func:`shard_filter`, :func:`parse_shard_topic`,
  :func:`shard_client_id` (one persistent MQTT session per shard, so a shard's backlog
  and unacknowledged messages follow the shard to its new owner).

Pure functions, no I/O. In the kernel because both the ingest workers (subscriptions) and the
alert service (engines per tenant and shard) use it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

TELEMETRY_TOPIC = "pulse/v1/{tenant}/{device}/telemetry"
SHARD_TOPIC_ROOT = "pulse/v1s"
DEFAULT_SHARDS = 64
_MAX_SHARDS = 1 << 16  # far below 2**32, so the modulo bias of a 32-bit hash is < 2e-5


def _check_shards(shards: int) -> None:
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= _MAX_SHARDS:
        raise ValueError(f"shards must be an integer in 1..{_MAX_SHARDS}, not {shards!r}")


def _check_segment(name: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    if any(c in value for c in "/+#\x00"):
        raise ValueError(f"{name} {value!r} must not contain '/', '+', '#' or NUL (it is an MQTT topic level)")


def shard_key(tenant_id: str, device_id: str) -> bytes:
    """The bytes that are hashed: ``"{tenant}/{device}"`` in UTF-8 (unambiguous, since
    neither part may contain ``/``)."""
    _check_segment("tenant_id", tenant_id)
    _check_segment("device_id", device_id)
    return f"{tenant_id}/{device_id}".encode()


def shard_of(tenant_id: str, device_id: str, shards: int) -> int:
    """The virtual shard (``0 <= shard < shards``) of a device; stable across processes,
    machines and Python versions."""
    _check_shards(shards)
    digest = hashlib.sha256(shard_key(tenant_id, device_id)).digest()
    return int.from_bytes(digest[:4], "big") % shards


# ------------------------------------------------------------------ topics


def shard_topic(shard: int, tenant_id: str, device_id: str, root: str = SHARD_TOPIC_ROOT) -> str:
    """Where the broker republishes a device's telemetry: ``pulse/v1s/{shard}/{tenant}/{device}/telemetry``."""
    if not isinstance(shard, int) or shard < 0:
        raise ValueError(f"shard must be a non-negative integer, not {shard!r}")
    _check_segment("tenant_id", tenant_id)
    _check_segment("device_id", device_id)
    return f"{root}/{shard}/{tenant_id}/{device_id}/telemetry"


def shard_filter(shard: int, root: str = SHARD_TOPIC_ROOT) -> str:
    """The (non-shared) subscription of the worker that owns ``shard``."""
    if not isinstance(shard, int) or shard < 0:
        raise ValueError(f"shard must be a non-negative integer, not {shard!r}")
    return f"{root}/{shard}/+/+/telemetry"


def parse_shard_topic(topic: str, root: str = SHARD_TOPIC_ROOT) -> tuple[int, str, str]:
    """``pulse/v1s/{shard}/{tenant}/{device}/telemetry`` → (shard, tenant, device). ``root``
    is configurable so that separate deployments (or tests) can share one broker."""
    parts = topic[len(root) + 1:].split("/") if topic.startswith(root + "/") else []
    if (len(parts) != 4 or parts[3] != "telemetry"
            or not parts[0].isdigit() or not parts[1] or not parts[2]):
        raise ValueError(f"not a shard telemetry topic: {topic!r}")
    if parts[0] != str(int(parts[0])):
        raise ValueError(f"shard number with leading zeros in {topic!r}")
    return int(parts[0]), parts[1], parts[2]


def shard_client_id(shard: int, prefix: str = "pulse-ingest") -> str:
    """MQTT client id of a shard's persistent session (owned by one worker at a time; a
    second connection with the same id takes the session over, which fences the old owner)."""
    if not isinstance(shard, int) or shard < 0:
        raise ValueError(f"shard must be a non-negative integer, not {shard!r}")
    return f"{prefix}-shard-{shard}"


def emqx_rule_sql(shards: int = DEFAULT_SHARDS) -> str:
    """EMQX rule SQL computing :func:`shard_of` for each telemetry message; pair it with a
    ``republish`` action to topic ``pulse/v1s/${shard}/${tenant}/${device}/telemetry``,
    payload ``${payload}``, QoS ``${qos}`` (see deploy/emqx/)."""
    _check_shards(shards)
    tenant = "nth(3, split(topic, '/'))"
    device = "nth(4, split(topic, '/'))"
    key = f"concat(concat({tenant}, '/'), {device})"
    return (
        "SELECT\n"
        "  payload,\n"
        "  qos,\n"
        f"  {tenant} AS tenant,\n"
        f"  {device} AS device,\n"
        f"  mod(subbits(hexstr2bin(sha256({key})), 1, 32), {shards}) AS shard\n"
        'FROM\n  "pulse/v1/+/+/telemetry"'
    )


# ------------------------------------------------------------------ shard → worker


def _weight(worker_id: str, shard: int) -> int:
    h = hashlib.blake2b(f"{worker_id}\x00{shard}".encode(), digest_size=8, person=b"pulse-hrw")
    return int.from_bytes(h.digest(), "big")


def owner_of(shard: int, worker_ids: Iterable[str]) -> str:
    """The worker with the highest random weight for ``shard`` (ties broken by id)."""
    workers = list(worker_ids)
    if not workers:
        raise ValueError("no workers")
    return max(workers, key=lambda w: (_weight(w, shard), w))


def assign(worker_ids: Iterable[str], shards: int) -> dict[str, list[int]]:
    """Rendezvous assignment of shards ``0..shards-1`` to workers: every worker appears (an
    empty list when it owns nothing) and each shard has exactly one owner. Depends only on
    the *set* of worker ids, so every worker computes the same answer on its own."""
    _check_shards(shards)
    workers = sorted(set(worker_ids))
    if not workers:
        raise ValueError("no workers")
    for w in workers:
        if not isinstance(w, str) or not w:
            raise ValueError(f"worker ids must be non-empty strings, not {w!r}")
    out: dict[str, list[int]] = {w: [] for w in workers}
    for shard in range(shards):
        out[owner_of(shard, workers)].append(shard)
    return out


def moved_shards(before: Mapping[str, Iterable[int]], after: Mapping[str, Iterable[int]]) -> dict[int, tuple[str | None, str | None]]:
    """Shards whose owner differs between two assignments: ``{shard: (old owner, new owner)}``."""
    old = {s: w for w, ss in before.items() for s in ss}
    new = {s: w for w, ss in after.items() for s in ss}
    return {s: (old.get(s), new.get(s)) for s in sorted(set(old) | set(new)) if old.get(s) != new.get(s)}
