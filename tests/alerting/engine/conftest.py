"""Scenario kit for the alert engine tests: readings at second offsets from T0, and a
compact view of transitions — (second, subject, from, to)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerting.engine import DeviceInfo, Engine, Reading, Transition, to_us

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Kit:
    T0 = T0
    DEVICES = [
        DeviceInfo("t", "d1", "s1", {"line": "a"}, "pump"),
        DeviceInfo("t", "d2", "s1", {"line": "b"}, "pump"),
        DeviceInfo("t", "d3", "s2", {"line": "a"}, "fan"),
        DeviceInfo("t", "d4", "s2", {"line": "b"}, "fan"),
    ]

    to_us = staticmethod(to_us)

    @staticmethod
    def at(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    def engine(self, rules, devices=None, clock_start=T0) -> Engine:
        return Engine(rules, self.DEVICES if devices is None else devices, clock_start=clock_start)

    def reading(self, seconds: float, device: str, **metrics: float) -> Reading:
        return Reading("t", device, self.at(seconds), metrics)

    def run(self, engine: Engine, steps) -> list[Transition]:
        """steps: (sec, device, {metrics}) | (sec, "advance") | (sec, "ack"|"resolve", fingerprint)."""
        out: list[Transition] = []
        for step in steps:
            sec, what = step[0], step[1]
            if what == "advance":
                out += engine.advance(self.at(sec))
            elif what == "ack":
                out += engine.acknowledge(step[2], self.at(sec))
            elif what == "resolve":
                out += engine.resolve(step[2], self.at(sec))
            else:
                out += engine.observe(Reading("t", what, self.at(sec), step[2]))
        return out

    @staticmethod
    def brief(transitions) -> list[tuple]:
        return [
            ((t.at - T0).total_seconds(), t.fingerprint.subject, t.from_state.value, t.to_state.value)
            for t in transitions
        ]


@pytest.fixture
def kit() -> Kit:
    return Kit()
