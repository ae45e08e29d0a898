"""Time partitions shared by the analytics assets (UTC; never device × time)."""

import dagster as dg

PARTITIONS_START = "2025-01-01"
HOURLY = dg.HourlyPartitionsDefinition(start_date=f"{PARTITIONS_START}-00:00")
DAILY = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START)
HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"
OWNERS = ["team:analytics"]
