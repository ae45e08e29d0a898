"""Downloads of an SLA report in the formats the scheduled runs write (assets.sla writers)."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path


def csv_zip(report) -> bytes:
    """The report's CSV tables (summary, sites, devices, incidents, response times, alerts),
    exactly as ``assets.sla.write_report`` writes them, in one zip."""
    from assets.sla import write_report

    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="pulse-sla-") as tmp:
        files = write_report(report, Path(tmp), ["csv"])
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, arcname=f.name)
    return buf.getvalue()


def json_text(report) -> str:
    return json.dumps(report.to_json_dict(), indent=2, default=str)


def html_text(report) -> str:
    from assets.report_html import render_sla_html

    return render_sla_html(report)
