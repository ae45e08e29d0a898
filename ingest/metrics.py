"""Prometheus metrics of the ingest service (exposed at GET /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

ENVELOPES = Counter("pulse_ingest_envelopes_total", "Envelopes received", ["transport"])
ROWS_STORED = Counter("pulse_ingest_rows_stored_total", "Telemetry rows committed")
DUPLICATE_ROWS = Counter("pulse_ingest_duplicate_rows_total", "Rows skipped as already stored (redelivery)")
QUARANTINED = Counter("pulse_ingest_quarantined_total", "Payloads quarantined", ["transport", "reason"])
BATCH_SECONDS = Histogram(
    "pulse_ingest_batch_seconds", "Time to commit one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_ROWS = Histogram("pulse_ingest_batch_rows", "Rows per batch", buckets=(1, 10, 100, 1000, 5000, 20000, 100000))
QUEUE_ROWS = Gauge("pulse_ingest_queue_rows", "Rows waiting in the writer queue")
DB_ERRORS = Counter("pulse_ingest_db_errors_total", "Failed batch commits (retried)")
HTTP_REJECTED = Counter("pulse_ingest_http_rejected_total", "HTTP requests refused", ["status"])
MQTT_CONNECTED = Gauge("pulse_ingest_mqtt_connected", "1 while connected to the broker")
