"""Self-contained HTML for SLA reports: inline SVG charts and tables, no scripts, no external
URLs (opens offline, survives mail clients that strip JavaScript)."""

from __future__ import annotations

import html
from datetime import datetime

import polars as pl

E = html.escape
OK, BAD, ACCENT, GRID = "#2e7d32", "#c62828", "#1565c0", "#ddd"


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def table(df: pl.DataFrame, *, caption: str, css_class: str, durations: tuple[str, ...] = (), limit: int = 500) -> str:
    head = "".join(f"<th>{E(c)}</th>" for c in df.columns)
    body = []
    for row in df.head(limit).iter_rows(named=True):
        cells = []
        for c, v in row.items():
            text = duration(v) if c in durations else _fmt(v)
            style = ""
            if c == "meets_target":
                style = f' style="color:{OK if v else BAD};font-weight:bold"'
            cells.append(f"<td{style}>{E(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f'<p class="note">{df.height - limit} more rows in the CSV/JSON.</p>' if df.height > limit else ""
    empty = "" if df.height else f'<tr><td colspan="{len(df.columns)}">none</td></tr>'
    return (f'<table class="{E(css_class)}"><caption>{E(caption)}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}{empty}</tbody></table>{more}')


def bar_chart(labels: list[str], values: list[float | None], *, title: str, chart_id: str, target: float | None = None,
              lo: float | None = None, hi: float | None = None, unit: str = "", width: int = 760, height: int = 240) -> str:
    """Vertical bars; optional dashed target line; bars under target in red."""
    pad_l, pad_b, pad_t = 48, 46, 24
    vals = [v for v in values if v is not None]
    lo = lo if lo is not None else min([0.0] + vals)
    hi = hi if hi is not None else max(vals + [target or 0.0, 1e-9])
    if target is not None:
        lo = min(lo, target - 0.5 * max(1e-9, hi - target))
    span = (hi - lo) or 1.0
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    n = max(1, len(labels))
    bw = plot_w / n
    y = lambda v: pad_t + plot_h * (1 - (v - lo) / span)  # noqa: E731
    parts = [f'<svg id="{E(chart_id)}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{E(title)}">',
             f'<title>{E(title)}</title>',
             f'<text x="{pad_l}" y="14" font-size="12" font-weight="bold">{E(title)}</text>']
    for k in range(5):
        v = lo + span * k / 4
        parts.append(f'<line x1="{pad_l}" x2="{width - 8}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="{GRID}"/>'
                     f'<text x="{pad_l - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v:.4g}{E(unit)}</text>')
    step = max(1, n // 16)  # label at most ~16 bars so text does not overlap
    for i, (label, v) in enumerate(zip(labels, values)):
        x = pad_l + i * bw
        if v is not None:
            top = y(max(min(v, hi), lo))
            color = BAD if target is not None and v < target else (OK if target is not None else ACCENT)
            parts.append(f'<rect x="{x + bw * 0.1:.1f}" y="{top:.1f}" width="{bw * 0.8:.1f}" '
                         f'height="{max(0.0, pad_t + plot_h - top):.1f}" fill="{color}">'
                         f'<title>{E(label)}: {v:.4g}{E(unit)}</title></rect>')
        if i % step == 0:
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{height - pad_b + 14}" font-size="10" text-anchor="end" '
                         f'transform="rotate(-35 {x + bw / 2:.1f} {height - pad_b + 14})">{E(label)}</text>')
    if target is not None:
        parts.append(f'<line class="target" x1="{pad_l}" x2="{width - 8}" y1="{y(target):.1f}" y2="{y(target):.1f}" '
                     f'stroke="#000" stroke-dasharray="5,4"/><text x="{width - 10}" y="{y(target) - 4:.1f}" '
                     f'font-size="10" text-anchor="end">target {target:g}{E(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:12px 0 24px;font-size:13px}caption{text-align:left;font-weight:bold;padding:4px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}
.kpi{display:inline-block;border:1px solid #ccc;border-radius:6px;padding:8px 14px;margin:0 8px 8px 0}
.kpi b{display:block;font-size:22px}.note{color:#666;font-size:12px}"""


def render_sla_html(report) -> str:
    s = report.summary()
    a = report.avail
    status = (f'<span style="color:{OK if s["meets_target"] else BAD}">'
              f'{"meets" if s["meets_target"] else "misses"} the {s["target_pct"]:g}% target</span>')
    kpis = [("Availability", f'{_fmt(s["availability_pct"])}%'), ("Target", f'{s["target_pct"]:g}%'),
            ("Downtime", duration(s["downtime_s"])), ("Incidents", s["incidents"]),
            ("Devices below target", s["devices_below_target"]),
            ("Completeness", f'{_fmt(s["completeness_pct"])}%'), ("Alerts", s["alerts"]),
            ("MTTA", duration(s["mtta_s"])), ("MTTR", duration(s["mttr_s"]))]
    kpi_html = "".join(f'<div class="kpi">{E(k)}<b>{E(str(v))}</b></div>' for k, v in kpis)
    tl = a.timeline
    charts = [bar_chart(tl["bucket"].to_list(), tl["availability_pct"].to_list(), target=report.target_pct, hi=100.0,
                        unit="%", chart_id="chart-timeline",
                        title=f"Fleet availability per {'day' if report.period.kind == 'monthly' else 'hour'} (%)"),
              bar_chart(a.sites["site_id"].to_list(), a.sites["availability_pct"].to_list(), target=report.target_pct,
                        hi=100.0, unit="%", chart_id="chart-sites", title="Availability by site (%)")]
    sev = report.response.filter(pl.col("group_by") == "severity")
    if sev.height:
        labels = [f"{g} MTTA" for g in sev["group"]] + [f"{g} MTTR" for g in sev["group"]]
        mins = [None if v is None else v / 60 for v in sev["mtta_s"].to_list() + sev["mttr_s"].to_list()]
        charts.append(bar_chart(labels, mins, unit="m", chart_id="chart-response",
                                title="Mean time to acknowledge / resolve by severity (minutes)"))
    worst = a.devices.sort("availability_pct", "device_id")
    sections = [
        table(a.sites, caption="Sites", css_class="sites", durations=("period_s", "downtime_s")),
        table(worst, caption="Devices (worst first)", css_class="devices", durations=("period_s", "downtime_s")),
        table(a.incidents, caption="Downtime incidents", css_class="incidents", durations=("duration_s",)),
        table(report.response, caption="Alert response times (MTTA / MTTR)", css_class="response",
              durations=("mtta_s", "mttr_s", "median_tta_s", "median_ttr_s")),
    ]
    partial = ('<p class="note">Partial report: the period is not over yet '
               f'(data up to {E(s["generated_at"])}).</p>' if s["partial"] else "")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>SLA report {E(report.tenant_id)} {E(report.period.label)}</title><style>{CSS}</style></head><body>"
            f"<h1>SLA report — {E(report.tenant_id)}, {E(report.period.label)}</h1>"
            f'<p>{E(report.period.kind.capitalize())} period in {E(report.period.time_zone)} '
            f'({E(s["period_start"])} – {E(s["period_end"])}); {status}.</p>{partial}{kpi_html}'
            + "".join(f"<figure>{c}</figure>" for c in charts) + "".join(sections)
            + f'<p class="note">Generated {E(s["generated_at"])} by OpsConductor Pulse.</p></body></html>')
