"""`pulse app`: start the Streamlit app (registered lazily by pulse/cli.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

ENTRY = Path(__file__).resolve().parent / "streamlit_app.py"


def streamlit_command(port: int, address: str = "127.0.0.1", headless: bool = True) -> list[str]:
    # app.serve = `streamlit run` with the pages' heavy imports done before the first visitor
    return [sys.executable, "-m", "app.serve", "run", str(ENTRY),
            "--server.port", str(port), "--server.address", address,
            "--server.headless", "true" if headless else "false",
            "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]


def register(app: typer.Typer) -> None:
    @app.command("app")
    def run_app(
        port: int = typer.Option(8501, help="HTTP port of the app"),
        address: str = typer.Option("127.0.0.1", help="address to listen on"),
        tenant: str = typer.Option(None, help="pin the app to one tenant (sets PULSE_APP_TENANT)"),
    ) -> None:
        """Start the Streamlit fleet analytics app."""
        env = dict(os.environ)
        if tenant:
            env["PULSE_APP_TENANT"] = tenant
        typer.echo(f"Pulse app on http://{address}:{port}")
        try:
            code = subprocess.call(streamlit_command(port, address), env=env)
        except KeyboardInterrupt:
            code = 0
        raise typer.Exit(code)
