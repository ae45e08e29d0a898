"""Start Streamlit with the app's heavy modules already imported.

``python -m app.serve run app/streamlit_app.py --server.port ...`` is ``streamlit run`` in a
process that first imports what every page needs (Polars, Altair, the alerting and report
code: ~3 s on 2 cores). Streamlit runs each session's script in a thread of this process, so
the first visitor no longer pays those imports (the health endpoint answers only after them).
"""

from __future__ import annotations

import importlib
import sys
import time

PRELOAD = ("numpy", "polars", "pyarrow", "altair", "yaml", "psycopg", "psycopg_pool",
           "app.queries", "app.ui", "app.actions", "app.lab", "app.reports",
           "alerting.api", "alerting.config", "alerting.history", "alerting.rules", "alerting.silences",
           "assets.sla", "assets.sla_delivery", "assets.report_html", "assets.realtime",
           "detectors.registry", "detectors.nab", "pulse.settings", "pulse.db")


def preload(modules=PRELOAD) -> dict[str, str]:
    """Import ``modules``; a missing optional one is skipped (reported, never fatal)."""
    failed = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the page that needs it shows the error
            failed[name] = f"{type(exc).__name__}: {exc}"
    return failed


def main() -> None:
    started = time.perf_counter()
    failed = preload()
    took = time.perf_counter() - started
    print(f"pulse app: preloaded modules in {took:.1f} s" + (f" (skipped: {', '.join(failed)})" if failed else ""),
          file=sys.stderr, flush=True)
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", *sys.argv[1:]]
    sys.exit(stcli.main())


if __name__ == "__main__":
    main()
