"""deploy/measure_lake.py writes a tenant-hour like the lake export and reports bytes/row."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("measure_lake", ROOT / "deploy" / "measure_lake.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_measure_writes_a_real_zstd_lake_file(tmp_path):
    mod = _module()
    res = mod.measure(150, 60.0, tmp_path, jitter_ms=500.0)
    assert res["rows"] == 150 * 60 * 5  # 5 metrics per device type, one reading a minute
    files = list(tmp_path.rglob("*.parquet"))
    assert len(files) == 1 and files[0].stat().st_size == res["bytes"]
    meta = pq.ParquetFile(files[0]).metadata
    assert meta.num_rows == res["rows"]
    assert meta.row_group(0).column(4).compression == "ZSTD"
    table = pq.read_table(files[0])
    assert table.column("device_id").to_pylist() == sorted(table.column("device_id").to_pylist())
    # docs/scaling.md quotes 3.4-4.4 B/row at 2,000 devices; a small file carries more overhead
    assert 2.0 <= res["bytes_per_row"] <= 15.0, res
