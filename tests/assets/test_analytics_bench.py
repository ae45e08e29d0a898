from assets.bench import run_analytics_bench


def test_bench_smoke_reports_throughput_overhead_and_scaling():
    report = run_analytics_bench(rows=36_000, devices=100, scaling_base_rows=3_000, scaling_factors=(1, 4))
    assert report["rows"] == 30_000 and report["hours"] == 1  # 100 devices × 5 metrics × 60 minutes
    assert report["rollup_rows_per_s"] > 0 and report["dagster_overhead_ratio"] > 0
    assert [s["factor"] for s in report["scaling"]] == [1, 4]
    assert report["scaling"][1]["rows"] > report["scaling"][0]["rows"]
    assert all(s["peak_rss_mb"] > 0 for s in report["scaling"])
