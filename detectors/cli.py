"""``pulse detectors``: list detectors, run the NAB benchmark, show the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from detectors import registry

app = typer.Typer(help="Anomaly detectors: registry, NAB benchmark, leaderboard.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

DEFAULT_OUT = Path(".pulse") / "nab_results"


def _fail(msg: str) -> None:
    err.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _corpus(nab_dir: Optional[Path]):
    from detectors.nab import NabNotFoundError, load_corpus

    try:
        return load_corpus(nab_dir)
    except NabNotFoundError as exc:
        _fail(str(exc))
    except (OSError, ValueError, KeyError) as exc:
        _fail(f"cannot read the NAB corpus: {exc}")


def _params(name: str, text: Optional[str]) -> dict:
    try:
        raw = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        _fail(f"--params is not valid JSON ({exc.msg} at position {exc.pos})")
    if not isinstance(raw, dict):
        _fail("--params must be a JSON object, e.g. '{\"bins\": 20}'")
    try:
        return registry.validate_params(name, raw)
    except registry.InvalidParamsError as exc:
        _fail(str(exc))


def _canonical(name: str) -> str:
    try:
        return registry.canonical(name)
    except registry.UnknownDetectorError as exc:
        _fail(str(exc))


@app.command("list")
def list_detectors(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """All registered detectors with their parameters."""
    info = registry.describe()
    if as_json:
        console.print_json(json.dumps(info, default=str))
        return
    for d in info:
        star = " [green](default)[/green]" if d["default"] else ""
        table = Table(title=f"{d['name']}{star} — {d['summary']}", title_justify="left", show_edge=False)
        for col in ("param", "type", "default", "bounds", "help"):
            table.add_column(col)
        for p in d["params"]:
            b = p["bounds"]
            bounds = f"[{'' if b['min'] is None else b['min']}, {'' if b['max'] is None else b['max']}]"
            table.add_row(p["name"], p["type"], repr(p["default"]), bounds, p["help"])
        console.print(table)


@app.command()
def nab(
    detector: Annotated[str, typer.Option("--detector", "-d", help="registered name or 'default'")] = "default",
    params: Annotated[Optional[str], typer.Option("--params", help="JSON object of detector parameters")] = None,
    out: Annotated[Path, typer.Option("--out", help="results directory")] = DEFAULT_OUT,
    nab_dir: Annotated[Optional[Path], typer.Option("--nab-dir", help="NAB checkout (default: PULSE_NAB_DIR)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON summary")] = False,
) -> None:
    """Run a detector over the whole NAB corpus, write NAB-format results and score them."""
    from detectors.nab import run_corpus, write_results

    name = _canonical(detector)
    p = _params(name, params)
    corpus = _corpus(nab_dir)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=as_json,
        transient=True,
    ) as progress:
        task = progress.add_task(f"{name} on NAB", total=len(corpus.files))
        run = run_corpus(name, corpus, p, progress=lambda f: progress.update(task, advance=1, description=f.name))
    try:
        path = write_results(run, corpus, out, name=detector)
    except OSError as exc:
        _fail(f"cannot write results to {out}: {exc}")
    summary = run.summary()
    summary["results_dir"] = str(path)
    if not as_json:
        err.print(f"results written to {path}")
    console.print_json(json.dumps(summary)) if not as_json else typer.echo(json.dumps(summary))


@app.command()
def leaderboard(
    out: Annotated[Path, typer.Option("--out", help="results directory written by `nab`")] = DEFAULT_OUT,
    detector: Annotated[str, typer.Option("--detector", "-d", help="our detector to show")] = "default",
    nab_dir: Annotated[Optional[Path], typer.Option("--nab-dir", help="NAB checkout (default: PULSE_NAB_DIR)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Our score (latest written results, else computed now) beside NAB's published scoreboard."""
    from detectors.nab import published_scoreboard, read_results, run_corpus, score_run

    name = _canonical(detector)
    corpus = _corpus(nab_dir)
    # results are stored under the name given to `nab` (e.g. "default"), or the canonical name
    stored = next((n for n in (detector, name) if (out / n / "summary.json").is_file()), None)
    if stored is not None:
        try:
            scores = score_run(corpus, read_results(corpus, out, stored))  # re-score what is on disk
        except (OSError, ValueError, KeyError) as exc:
            _fail(f"cannot read results in {out / stored}: {exc}")
        ours = {k: v["score"] for k, v in scores.items()}
        source = str(out / stored)
    else:
        run = run_corpus(name, corpus, registry.validate_params(name, {}))
        ours = {k: v["score"] for k, v in run.results.items()}
        source = "computed now (defaults)"
    try:
        board = published_scoreboard(corpus.root)
    except (OSError, ValueError) as exc:
        _fail(f"cannot read results/final_results.json: {exc}")
    rows = [{"detector": f"pulse:{name}", "ours": True, **ours}]
    rows += [{"detector": k, "ours": False, **v} for k, v in board.items()]
    rows.sort(key=lambda r: -r.get("standard", float("-inf")))
    if as_json:
        typer.echo(json.dumps({"source": source, "rows": rows}))
        return
    table = Table(title=f"NAB leaderboard (ours from {source})")
    for col in ("detector", "standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        table.add_column(col, justify="left" if col == "detector" else "right")
    for r in rows:
        style = "bold green" if r["ours"] else None
        table.add_row(
            r["detector"],
            *(f"{r.get(c, float('nan')):.2f}" for c in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")),
            style=style,
        )
    console.print(table)


@app.command()
def precision(
    tenant: Annotated[Optional[str], typer.Option("--tenant", "-t", help="only this tenant's alerts")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Measured precision of each detector on operator-labelled anomaly alerts.

    Precision = real faults / (real faults + false alarms); maintenance is counted, not judged."""
    from pulse import db
    from pulse.errors import UserError

    from detectors.feedback import load_labels
    from detectors.feedback import precision as measure

    try:
        with db.connect() as conn:
            if conn.execute("select to_regclass('public.anomaly_labels')").fetchone()[0] is None:
                raise UserError("the database has no anomaly tables yet: run `pulse db migrate`")
            labels = load_labels(conn, tenant)
    except UserError as exc:
        _fail(str(exc))
    rows = measure(labels)
    if as_json:
        typer.echo(json.dumps({"tenant": tenant, "labelled_alerts": len(labels), "detectors": rows}))
        return
    if not rows:
        console.print("no labelled anomaly alerts yet (resolve anomaly alerts with a reason: "
                      "`pulse alerts resolve ID --reason real_fault|false_alarm|maintenance`)")
        return
    table = Table(title=f"Detector precision on labelled alerts{f' of {tenant}' if tenant else ''}")
    for col in ("detector", "precision", "real_fault", "false_alarm", "maintenance", "labelled"):
        table.add_column(col, justify="left" if col == "detector" else "right")
    for r in rows:
        table.add_row(r["detector"], "n/a" if r["precision"] is None else f"{r['precision']:.2f}",
                      *(str(r[c]) for c in ("real_fault", "false_alarm", "maintenance", "labelled")))
    console.print(table)


def main() -> None:  # for `python -m detectors.cli`
    app()


if __name__ == "__main__":
    main()


def register(root: typer.Typer) -> None:
    """Mount as `pulse detectors`."""
    root.add_typer(app, name="detectors", help="Anomaly detectors and the NAB benchmark.")
