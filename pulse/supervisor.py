"""`pulse up` / `pulse down`: run the services of a one-machine deployment, supervised.

The supervisor is one process (daemonised by `pulse up`, or in the foreground with
``--foreground``) that starts each service as a child process in its own process group,
with stdout/stderr appended to ``PULSE_HOME/logs/<service>.log``; it restarts a child that
exits with capped exponential backoff, and on SIGTERM/SIGINT stops every child (SIGTERM to
the group, SIGKILL after ``PULSE_STOP_TIMEOUT_S``). Files under ``PULSE_HOME/run``:

* ``supervisor.lock`` — held (flock) while a supervisor runs: one per PULSE_HOME.
* ``supervisor.pid`` — its pid; ``state.json`` — the services (pid, state, restarts, URL,
  log), rewritten atomically on every change; ``plan.json`` — what `pulse up` asked for.

The services are the platform's own commands (`pulse ingest`, `pulse notify`, `pulse app`)
and Dagster's (`dagster-webserver`, `dagster-daemon` with DAGSTER_HOME under PULSE_HOME),
so this module imports no other package of the platform.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from pulse.errors import UserError
from pulse.settings import Settings, parse_mqtt_url

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("ingest", "notify", "dagster-webserver", "dagster-daemon", "app")
ALIASES = {"dagster": ("dagster-webserver", "dagster-daemon"), "streamlit": ("app",), "alerting": ("notify",)}
SETTLE_S = 2.0  # a service without a health URL counts as running once it has lived this long
EXIT_ALREADY_RUNNING = 3


# ------------------------------------------------------------------ what to run


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # on top of the supervisor's environment
    cwd: str = str(REPO)
    url: str | None = None  # what a person opens
    health_url: str | None = None  # answers 2xx once the service is ready
    port: int | None = None
    about: str = ""


@dataclass
class Plan:
    specs: list[ServiceSpec]
    notes: list[str]  # messages for the operator (services off, why)
    home: Path

    def to_json(self) -> str:
        return json.dumps({"home": str(self.home), "notes": self.notes, "specs": [asdict(s) for s in self.specs]})

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        return cls([ServiceSpec(**s) for s in data["specs"]], data["notes"], Path(data["home"]))


def select(only: str | None) -> list[str]:
    """``--only ingest,app`` (aliases: dagster, streamlit, alerting) → service names in start order."""
    if not only:
        return list(SERVICES)
    wanted: set[str] = set()
    for part in filter(None, (p.strip() for p in only.split(","))):
        if part in ALIASES:
            wanted.update(ALIASES[part])
        elif part in SERVICES:
            wanted.add(part)
        else:
            raise UserError(f"unknown service {part!r} in --only: choose from "
                            f"{', '.join(SERVICES)} (or {', '.join(ALIASES)})")
    if not wanted:
        raise UserError("--only names no service")
    return [name for name in SERVICES if name in wanted]


def dagster_home(home: Path) -> Path:
    """DAGSTER_HOME under PULSE_HOME with a dagster.yaml (kept if the operator edited it)."""
    path = (home / "dagster").resolve()
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return path


def broker_reachable(mqtt_url: str, timeout: float = 2.0) -> bool:
    host, port = parse_mqtt_url(mqtt_url)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def bind_error(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port (None: it could)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
            return None
        except OSError as exc:
            return "in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc)).lower()


def plan(settings: Settings, database_url: str, names: list[str]) -> Plan:
    """The services to run, with the environment every child shares."""
    home = settings.home.resolve()
    host = settings.http_host
    bin_dir = Path(sys.executable).parent
    pulse_cmd = [sys.executable, "-m", "pulse.cli"]
    env = {"PULSE_DATABASE_URL": database_url, "PULSE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    if settings.lake_dir is not None:
        env["PULSE_LAKE_DIR"] = str(settings.lake_dir.resolve())
    specs, notes = [], []
    for name in names:
        if name == "ingest":
            argv = [*pulse_cmd, "ingest", "--http-port", str(settings.http_port)]
            if not settings.mqtt_url:
                notes.append("ingest: MQTT off (PULSE_MQTT_URL unset); HTTP ingest only")
                argv += ["--mqtt", "off"]
            elif not broker_reachable(settings.mqtt_url):
                notes.append(f"ingest: no MQTT broker reachable at {settings.mqtt_url}: MQTT off, HTTP ingest "
                             f"only (start the broker, then `pulse down && pulse up`)")
                argv += ["--mqtt", "off"]
            else:
                argv += ["--mqtt", settings.mqtt_url]
            base = f"http://{host}:{settings.http_port}"
            specs.append(ServiceSpec(name, argv, env, url=f"{base}/v1/telemetry", health_url=f"{base}/healthz",
                                     port=settings.http_port, about="POST telemetry here (device token)"))
        elif name == "notify":
            specs.append(ServiceSpec(name, [*pulse_cmd, "notify"], env,
                                     about="delivery worker + escalation runner"))
        elif name.startswith("dagster-"):
            exe = bin_dir / name
            if not exe.exists():
                notes.append(f"{name}: not installed next to {sys.executable}: skipped")
                continue
            denv = {**env, "DAGSTER_HOME": str(dagster_home(home))}
            if name == "dagster-webserver":
                base = f"http://{host}:{settings.dagster_port}"
                specs.append(ServiceSpec(name, [str(exe), "-w", "workspace.yaml", "-h", host,
                                                "-p", str(settings.dagster_port)], denv, url=base,
                                         health_url=f"{base}/server_info", port=settings.dagster_port,
                                         about="Dagster UI: assets, checks, schedules, sensors"))
            else:
                specs.append(ServiceSpec(name, [str(exe), "run", "-w", "workspace.yaml"], denv,
                                         about="runs Dagster schedules and sensors"))
        elif name == "app":
            base = f"http://{host}:{settings.app_port}"
            specs.append(ServiceSpec(name, [*pulse_cmd, "app", "--port", str(settings.app_port), "--address", host],
                                     env, url=base, health_url=f"{base}/_stcore/health", port=settings.app_port,
                                     about="Streamlit: fleet, devices, alerts, SLA reports, detector and rule labs, data health"))
    return Plan(specs, notes, home)


def check_ports(specs: list[ServiceSpec], host: str) -> None:
    setting = {"ingest": "PULSE_HTTP_PORT", "dagster-webserver": "PULSE_DAGSTER_PORT", "app": "PULSE_APP_PORT"}
    problems = [f"{s.name}: cannot listen on {host}:{s.port}: {why} "
                f"(set {setting[s.name] if why == 'in use' else 'PULSE_HTTP_HOST'})"
                for s in specs if s.port is not None and (why := bind_error(host, s.port))]
    if problems:
        raise UserError("; ".join(problems))


# ------------------------------------------------------------------ files under PULSE_HOME


def run_dir(home: Path) -> Path:
    return home / "run"


def log_dir(home: Path) -> Path:
    return home / "logs"


def read_state(home: Path) -> dict | None:
    try:
        return json.loads((run_dir(home) / "state.json").read_text())
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _process_matches(pid: int | None, create_time: float | None) -> bool:
    """Is ``pid`` still the process that was recorded (not a recycled pid, not a zombie)?"""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return (proc.status() != psutil.STATUS_ZOMBIE
                and (create_time is None or abs(proc.create_time() - create_time) < 1.0))
    except psutil.Error:
        return False


def running_supervisor(home: Path) -> int | None:
    """The pid of the supervisor of this PULSE_HOME, or None."""
    state = read_state(home) or {}
    sup = state.get("supervisor") or {}
    try:
        pid = int((run_dir(home) / "supervisor.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    if sup.get("pid") != pid or sup.get("stopped_at"):
        return None
    return pid if _process_matches(pid, sup.get("create_time")) else None


def leftover_children(home: Path) -> list[dict]:
    """Services recorded in the state file whose process still runs (after a supervisor was killed)."""
    state = read_state(home) or {}
    return [svc for svc in (state.get("services") or {}).values()
            if svc.get("state") != "stopped" and _process_matches(svc.get("pid"), svc.get("create_time"))]


# ------------------------------------------------------------------ processes


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def spawn(spec: ServiceSpec, home: Path, note: str = "") -> subprocess.Popen:
    """Start one service in its own process group, output appended to logs/<name>.log."""
    logs = log_dir(home)
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{spec.name}.log", "ab") as log:
        log.write(f"--- {_stamp()} supervisor: starting {spec.name}{note}: {' '.join(spec.argv)}\n".encode())
        log.flush()
        # Own session: stopping the group also stops what the service started itself
        # (Streamlit under `pulse app`, Dagster's code servers).
        return subprocess.Popen(spec.argv, cwd=spec.cwd, env={**os.environ, **spec.env}, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _group_alive(pgid: int) -> bool:
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_groups(procs: list[subprocess.Popen | int], timeout: float) -> None:
    """SIGTERM each process group, SIGKILL what is left after ``timeout``; reap; wait until none lives."""
    pgids = [p.pid if isinstance(p, subprocess.Popen) else p for p in procs]
    for pgid in pgids:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if isinstance(p, subprocess.Popen):
                p.poll()
        if not any(_group_alive(pgid) for pgid in pgids):
            break
        time.sleep(0.1)
    for pgid in pgids:
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
    for p in procs:
        if isinstance(p, subprocess.Popen):
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
    deadline = time.monotonic() + 5
    while any(_group_alive(pgid) for pgid in pgids) and time.monotonic() < deadline:
        time.sleep(0.05)


# ------------------------------------------------------------------ supervision


@dataclass(frozen=True)
class RestartPolicy:
    """Capped exponential backoff: 1 s, 2 s, 4 s … 60 s between restarts of a crashing child.

    Why not stamina (which the project has): stamina retries a *call* by sleeping between
    attempts, while the supervisor must keep watching every other child while one waits;
    what it needs is just the next start time, computed here in one line. No jitter: the
    children of one machine do not stampede a shared server."""

    initial_s: float = 1.0
    max_s: float = 60.0
    stable_after_s: float = 30.0  # ran this long → healthy again: the next crash restarts after initial_s

    def delay(self, failures: int) -> float:
        return min(self.max_s, self.initial_s * 2 ** max(0, failures - 1))


@dataclass
class Child:
    spec: ServiceSpec
    proc: subprocess.Popen | None = None
    state: str = "starting"  # starting → running; backoff (waiting to restart); stopping → stopped
    started_at: float | None = None  # wall clock
    started_mono: float = 0.0
    create_time: float | None = None
    restarts: int = 0
    failures: int = 0  # consecutive quick exits
    next_start: float = 0.0
    last_exit: int | None = None
    last_probe: float = 0.0

    def view(self, home: Path) -> dict:
        alive = self.proc is not None and self.state in ("starting", "running", "stopping")
        return {"name": self.spec.name, "pid": self.proc.pid if alive else None,
                "create_time": self.create_time, "state": self.state, "started_at": self.started_at,
                "restarts": self.restarts, "last_exit": self.last_exit, "url": self.spec.url,
                "log": str(log_dir(home) / f"{self.spec.name}.log"), "about": self.spec.about}


class Supervisor:
    def __init__(self, plan: Plan, *, stop_timeout_s: float = 15.0, policy: RestartPolicy = RestartPolicy(),
                 tick_s: float = 0.2):
        self.plan = plan
        self.home = plan.home
        self.children = [Child(spec) for spec in plan.specs]
        self.stop_timeout_s = stop_timeout_s
        self.policy = policy
        self.tick_s = tick_s
        self._stop = False
        self._dirty = True
        self._lock_fd: int | None = None
        me = psutil.Process()
        self.info = {"pid": me.pid, "create_time": me.create_time(), "started_at": time.time(),
                     "home": str(self.home), "notes": plan.notes, "stopped_at": None}

    # -- lifecycle

    def acquire(self) -> bool:
        run = run_dir(self.home)
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(run / "supervisor.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self._write_state()
        _write_atomic(run / "supervisor.pid", f"{os.getpid()}\n")
        return True

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; returns the exit code."""
        if self._lock_fd is None and not self.acquire():
            return EXIT_ALREADY_RUNNING
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            for child in self.children:
                self._start(child)
            while not self._stop:
                self._tick()
                if self._dirty:
                    self._write_state()
                time.sleep(self.tick_s)
        finally:
            self._stop_all()
        return 0

    def _on_signal(self, signum, frame) -> None:
        self._stop = True

    # -- children

    def _start(self, child: Child) -> None:
        note = f" (restart {child.restarts})" if child.restarts else ""
        try:
            child.proc = spawn(child.spec, self.home, note)
        except OSError as exc:  # e.g. the executable vanished: treat as a crash, back off
            child.proc, child.last_exit = None, -1
            self._log(child, f"cannot start: {exc}")
            self._crashed(child, time.monotonic())
            return
        child.state, child.started_at, child.started_mono = "starting", time.time(), time.monotonic()
        with contextlib.suppress(psutil.Error):
            child.create_time = psutil.Process(child.proc.pid).create_time()
        self._dirty = True

    def _crashed(self, child: Child, now: float) -> None:
        ran = now - child.started_mono if child.started_mono else 0.0
        child.failures = 1 if ran >= self.policy.stable_after_s else child.failures + 1
        delay = self.policy.delay(child.failures)
        child.state, child.next_start = "backoff", now + delay
        self._log(child, f"exited with {child.last_exit} after {ran:.1f}s; restarting in {delay:g}s")
        self._dirty = True

    def _tick(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.state == "backoff":
                if now >= child.next_start:
                    child.restarts += 1
                    self._start(child)
                continue
            if child.proc is None:
                continue
            code = child.proc.poll()
            if code is not None:
                child.last_exit = code
                # Whatever it left behind (a server holding the port) goes with it.
                stop_groups([child.proc.pid], timeout=min(5.0, self.stop_timeout_s))
                self._crashed(child, now)
            elif child.state == "starting" and self._ready(child, now):
                child.state = "running"
                self._dirty = True

    def _ready(self, child: Child, now: float) -> bool:
        if child.spec.health_url is None:
            return now - child.started_mono >= SETTLE_S
        if now - child.last_probe < 0.5:
            return False
        child.last_probe = now
        try:
            with urllib.request.urlopen(child.spec.health_url, timeout=0.5) as resp:
                return 200 <= resp.status < 300
        except OSError:  # URLError, refused, timeout, HTTP 5xx
            return False

    def _stop_all(self) -> None:
        live = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in self.children:
            child.state = "stopping" if child in live else "stopped"
        self._write_state()
        stop_groups([c.proc for c in live], self.stop_timeout_s)
        for child in self.children:
            child.state = "stopped"
            if child.proc is not None:
                child.last_exit = child.proc.returncode
        self.info["stopped_at"] = time.time()
        self._write_state()
        with contextlib.suppress(OSError):
            (run_dir(self.home) / "supervisor.pid").unlink()

    # -- bookkeeping

    def _log(self, child: Child, message: str) -> None:
        """One line in the service's log and in the supervisor's own output (supervisor.log)."""
        stamp = _stamp()
        print(f"{stamp} {child.spec.name}: {message}", flush=True)
        with contextlib.suppress(OSError), open(log_dir(self.home) / f"{child.spec.name}.log", "a") as log:
            log.write(f"--- {stamp} supervisor: {message}\n")

    def _write_state(self) -> None:
        state = {"supervisor": {**self.info, "updated_at": time.time()},
                 "services": {c.spec.name: c.view(self.home) for c in self.children}}
        _write_atomic(run_dir(self.home) / "state.json", json.dumps(state, indent=2))
        self._dirty = False


# ------------------------------------------------------------------ what the CLI calls


def start_daemon(plan: Plan, stop_timeout_s: float) -> subprocess.Popen:
    """Run the supervisor detached (own session, no terminal); its output → logs/supervisor.log."""
    run, logs = run_dir(plan.home), log_dir(plan.home)
    run.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    plan_file = run / "plan.json"
    _write_atomic(plan_file, plan.to_json(), mode=0o600)  # holds the database URL
    with open(logs / "supervisor.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "pulse.supervisor", str(plan_file), str(stop_timeout_s)],
                                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_started(home: Path, daemon: subprocess.Popen | None, names: list[str], timeout: float) -> dict:
    """Wait until every service runs, one has failed, the daemon died, or ``timeout``; the last state."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        if daemon is not None and daemon.poll() is not None:
            break
        state = read_state(home) or {}
        services = state.get("services") or {}
        if daemon is None or state.get("supervisor", {}).get("pid") == daemon.pid:
            mine = [services.get(n, {}) for n in names]
            if all(s.get("state") == "running" for s in mine):
                break
            if any(s.get("restarts") or s.get("state") == "backoff" for s in mine):
                break  # one crashed on start: say so now rather than after the timeout
        time.sleep(0.2)
    return read_state(home) or state


def stop(home: Path, timeout: float) -> tuple[int | None, int]:
    """Stop the supervisor of ``home`` and wait until every child is gone: (supervisor pid, services stopped)."""
    pid = running_supervisor(home)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout + 15
        while _process_matches(pid, None) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _process_matches(pid, None):  # wedged: take it and its children down hard
            os.kill(pid, signal.SIGKILL)
    left = leftover_children(home)  # a supervisor that was killed -9 leaves these behind
    if left:
        stop_groups([svc["pid"] for svc in left], timeout)
    state = read_state(home) or {}
    services = state.get("services") or {}
    if pid is None and left:
        for svc in services.values():
            svc["state"], svc["pid"] = "stopped", None
        state.setdefault("supervisor", {})["stopped_at"] = time.time()
        _write_atomic(run_dir(home) / "state.json", json.dumps(state, indent=2))
    return pid, (len(services) if pid is not None else len(left))


def uptime(seconds: float | None) -> str:
    """42s → 0m42s, 3h07m, 2d5h; None → '-'."""
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 86400}d{s % 86400 // 3600}h" if s >= 86400 else (
        f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s")


def services_status(home: Path) -> dict | None:
    """For `pulse status`: the supervisor and its services, or None when none runs."""
    pid = running_supervisor(home)
    if pid is None:
        return None
    state = read_state(home) or {}
    sup = state.get("supervisor", {})
    services = []
    for svc in (state.get("services") or {}).values():
        services.append({k: svc.get(k) for k in ("name", "pid", "state", "restarts", "last_exit", "url", "log")}
                        | {"uptime_s": round(time.time() - svc["started_at"], 1)
                           if svc.get("started_at") and svc.get("state") in ("starting", "running") else None})
    return {"pid": pid, "uptime_s": round(time.time() - sup.get("started_at", time.time()), 1),
            "notes": sup.get("notes", []), "services": services}


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str]) -> int:
    """``python -m pulse.supervisor PLAN_JSON [STOP_TIMEOUT_S]``: the daemon `pulse up` starts."""
    plan_ = Plan.from_json(Path(argv[0]).read_text())
    sup = Supervisor(plan_, stop_timeout_s=float(argv[1]) if len(argv) > 1 else 15.0)
    if not sup.acquire():
        print("a supervisor already runs for", plan_.home, file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    print(f"supervisor {os.getpid()} starting {', '.join(s.name for s in plan_.specs)}", flush=True)
    code = sup.run()
    print(f"supervisor {os.getpid()} stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
