"""deploy/: Kubernetes manifests against the Kubernetes OpenAPI schemas (offline, the
kubernetes-validate package), docker-compose.yml against the Compose spec JSON schema
(vendored by check-jsonschema), the Dockerfile, env vars and probes against the code."""

from __future__ import annotations

import ast
import json
import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.37.0"  # schemas shipped inside kubernetes-validate==1.37.0 (offline)

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate==1.37.0")
jsonschema = pytest.importorskip("jsonschema")


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_docs() -> list[tuple[str, dict]]:
    out = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


def containers(doc: dict) -> list[dict]:
    kind = doc["kind"]
    if kind in ("Deployment", "StatefulSet", "Job"):
        spec = doc["spec"]["template"]["spec"]
        return spec.get("initContainers", []) + spec["containers"]
    return []


# ------------------------------------------------------------------ Kubernetes schemas


def test_every_manifest_validates_against_kubernetes_openapi_schemas():
    docs = k8s_docs()
    kinds = {d["kind"] for _, d in docs}
    assert {"Namespace", "ConfigMap", "PersistentVolumeClaim", "Job", "StatefulSet", "Deployment", "Service",
            "Ingress", "PodDisruptionBudget"} <= kinds
    for name, doc in docs:
        try:
            kv.validate(doc, K8S_VERSION, strict=True)
        except kv.ValidationError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{name}: {exc}")


def test_the_validator_rejects_a_broken_manifest():
    """Guards the guard: an unknown field (strict) and a wrong type must fail."""
    _, doc = next((n, d) for n, d in k8s_docs() if d["kind"] == "StatefulSet")
    bad = json.loads(json.dumps(doc))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {"path": "/x", "port": 1}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_VERSION, strict=True)
    bad = json.loads(json.dumps(doc))
    bad["spec"]["replicas"] = "three"
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == [p.name for p in manifest_files()]


def test_workloads_have_resources_probes_and_pdbs():
    docs = [d for _, d in k8s_docs()]
    long_running = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    for d in docs:
        for c in containers(d):
            assert c["resources"]["requests"] and c["resources"]["limits"], (d["metadata"]["name"], c["name"])
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
    for d in long_running:
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert "livenessProbe" in c, d["metadata"]["name"]
    pdb_selectors = [d["spec"]["selector"]["matchLabels"] for d in docs if d["kind"] == "PodDisruptionBudget"]
    for d in long_running:
        if d["metadata"]["name"] == "dagster-daemon":
            continue  # a singleton with Recreate: a PDB would only block node drains
        assert d["spec"]["selector"]["matchLabels"] in pdb_selectors, d["metadata"]["name"]


def test_ingest_is_a_statefulset_whose_worker_id_is_the_pod_name():
    sts = [d for _, d in k8s_docs() if d["kind"] == "StatefulSet"]
    assert [d["metadata"]["name"] for d in sts] == ["pulse-ingest"]
    c = sts[0]["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][:3] == ["ingest", "--worker-id", "$(POD_NAME)"]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    headless = [d for _, d in k8s_docs() if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"]
    assert sts[0]["spec"]["serviceName"] in [d["metadata"]["name"] for d in headless]


def test_app_service_and_ingress_keep_sessions_sticky():
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in k8s_docs()}
    assert docs[("Service", "pulse-app")]["spec"]["sessionAffinity"] == "ClientIP"
    ann = docs[("Ingress", "pulse-app")]["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/affinity"] == "cookie"


# ------------------------------------------------------------------ env vars are real settings


def _pulse_env_names() -> set[str]:
    from alerting.delivery import NotifySettings
    from pulse.settings import Settings

    names = {f"PULSE_{f.upper()}" for f in Settings.model_fields}
    names |= {f"PULSE_NOTIFY_{f.upper()}" for f in NotifySettings.model_fields}
    # variables read directly with os.environ by Pulse code (found by parsing the source)
    for pkg in ("pulse", "ingest", "alerting", "app", "assets", "pipelines", "detectors"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "get" and node.args and isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[0].value, str) and node.args[0].value.startswith("PULSE_")
                        and "environ" in ast.unparse(node.func.value)):
                    names.add(node.args[0].value)
    return names


def _secret_refs(config_text: str) -> set[str]:
    refs: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if set(node) == {"env"}:
                refs.add(node["env"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load(config_text))
    return refs


ALLOWED_OTHER = {"POD_NAME", "DAGSTER_HOME", "DAGSTER_PG_URL"}


def test_every_env_var_the_manifests_set_is_a_real_setting():
    known = _pulse_env_names()
    assert "PULSE_DATABASE_URL" in known and "PULSE_NOTIFY_METRICS_PORT" in known and "PULSE_APP_TENANT" in known
    seen: set[str] = set()
    for name, doc in k8s_docs():
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "pulse-env":
            seen |= set(doc["data"])
        for c in containers(doc):
            seen |= {e["name"] for e in c.get("env", [])}
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    channel_secrets = _secret_refs((DEPLOY / "pulse-config.yaml").read_text())
    for svc in compose["services"].values():
        if svc.get("image", "").startswith("opsconductor/pulse:"):  # third-party images have their own
            seen |= set(svc.get("environment") or {})
    assert "PULSE_DATABASE_URL" in seen and "PULSE_MQTT_URL" in seen
    unknown = {n for n in seen if n not in known and n not in ALLOWED_OTHER and n not in channel_secrets}
    assert not unknown, f"not Pulse settings: {sorted(unknown)}"
    # DAGSTER_PG_URL is only allowed because the instance config reads it
    assert "DAGSTER_PG_URL" in (DEPLOY / "dagster" / "dagster.yaml").read_text()


def test_a_typo_in_a_setting_name_would_be_caught():
    known = _pulse_env_names()
    assert "PULSE_DATABASE_URI" not in known and "PULSE_MQTT_SHARED_GROUP" not in known


# ------------------------------------------------------------------ probes point at real endpoints


def _ingest_routes() -> set[str]:
    from ingest.http import create_app

    class _W:
        connected, queued_rows, last_commit_at = True, 0, None

    app = create_app(pipeline=None, writer=_W(), max_body_bytes=1024, health=lambda: {})
    return {r.path for r in app.routes}


def test_probes_point_at_real_endpoints():
    from starlette.testclient import TestClient

    from ingest.http import create_app

    routes = _ingest_routes()
    assert {"/healthz", "/metrics"} <= routes

    class _W:
        connected, queued_rows, last_commit_at = True, 0, None

    client = TestClient(create_app(pipeline=None, writer=_W(), max_body_bytes=1024, health=lambda: {}))
    webserver_routes = {"/server_info", "/dagit_info"}
    expected = {
        "pulse-ingest": (routes, 8080),
        "pulse-app": ({"/_stcore/health"}, 8501),
        "pulse-notify": ({"/metrics"}, 9464),
        "dagster-webserver": (webserver_routes, 3000),
    }
    checked = set()
    for _, doc in k8s_docs():
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        name = doc["metadata"]["name"]
        for c in doc["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = c.get(probe_name)
                if not probe or "httpGet" not in probe:
                    continue
                paths, port = expected[name]
                assert probe["httpGet"]["path"] in paths, (name, probe_name)
                assert ports[probe["httpGet"]["port"]] == port, (name, probe_name)
                checked.add(name)
                if name == "pulse-ingest":
                    assert client.get(probe["httpGet"]["path"]).status_code == 200
    assert checked == set(expected)
    # the ports the containers expose are the ones the settings/commands use
    from app.cli import streamlit_command
    assert "8501" in streamlit_command(8501, "0.0.0.0")
    # Dagster's webserver serves /server_info (the readiness path above)
    import dagster_webserver.webserver as ws
    assert '"/server_info"' in Path(ws.__file__).read_text()
    # Streamlit's health endpoint
    from streamlit.web.server.starlette.starlette_routes import ROUTE_HEALTH
    assert "/" + ROUTE_HEALTH == "/_stcore/health"


# ------------------------------------------------------------------ copies stay equal


def _configmap_data(name: str) -> dict:
    return next(d for _, d in k8s_docs() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)["data"]


def test_configmaps_embed_the_same_files():
    assert _configmap_data("pulse-fleet-config")["fleet.yaml"] == (DEPLOY / "pulse-config.yaml").read_text()
    assert _configmap_data("dagster-instance")["dagster.yaml"] == (DEPLOY / "dagster" / "dagster.yaml").read_text()


def test_fleet_config_is_valid_pulse_configuration(tmp_path):
    import subprocess
    import sys

    pulse = Path(sys.executable).parent / "pulse"
    ok = subprocess.run([str(pulse), "config", "validate", str(DEPLOY / "pulse-config.yaml")],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text((DEPLOY / "pulse-config.yaml").read_text().replace("kind: window", "kind: windw"))
    bad = subprocess.run([str(pulse), "config", "validate", str(broken)], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


def test_emqx_rule_file_matches_the_sharding_code():
    from pulse.sharding import emqx_rule_sql

    text = (DEPLOY / "emqx" / "shard-rule.sql").read_text()
    body = "\n".join(l for l in text.splitlines() if not l.startswith("--"))
    assert body.strip() == emqx_rule_sql(64)


# ------------------------------------------------------------------ compose


def _compose_schema() -> dict:
    pytest.importorskip("check_jsonschema", reason="pip install check-jsonschema==0.39.0 (vendors the Compose spec)")
    ref = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(ref.read_text())


def test_compose_file_validates_against_the_compose_spec():
    schema = _compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft202012Validator  # the spec uses unevaluatedProperties
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    cls(schema).validate(doc)
    bad = json.loads(json.dumps(doc))
    bad["services"]["ingest"]["restart_policy"] = "always"  # not a Compose key
    with pytest.raises(jsonschema.ValidationError):
        cls(schema).validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["services"]["ingest"]["depends_on"]["mosquitto"]["condition"] = "service_ready"
    with pytest.raises(jsonschema.ValidationError):
        cls(schema).validate(bad)


def test_compose_topology_and_broker_settings():
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    svcs = doc["services"]
    assert {"timescaledb", "mosquitto", "migrate", "config-apply", "ingest", "notify", "dagster-webserver",
            "dagster-daemon", "app"} <= set(svcs)
    assert svcs["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert svcs["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    for name, svc in svcs.items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), name
    for mount in svcs["mosquitto"]["volumes"]:
        src = mount.split(":")[0]
        if src.startswith("./"):
            assert (DEPLOY / src).exists(), src
    conf = {}
    for line in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    assert conf["persistence"] == "true"
    assert conf["max_queued_messages"] == "0"
    assert int(conf["max_queued_bytes"]) > 0


# ------------------------------------------------------------------ Dockerfile


def test_dockerfile_pins_images_and_installs_the_project():
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert froms == ["python:3.11-slim-bookworm"]
    for image in froms:
        assert ":" in image and not image.endswith(":latest")
    assert "latest" not in text.lower()
    assert re.search(r"^RUN pip install \. ", text, flags=re.M)
    assert re.search(r"^USER 10001$", text, flags=re.M)
    assert re.search(r'^ENTRYPOINT \["pulse"\]$', text, flags=re.M)
    for src in re.findall(r"^COPY\s+(\S+)", text, flags=re.M):
        assert (ROOT / src.rstrip("/")).exists(), src
    # every package the project installs is copied into the image
    import tomllib
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = set(re.findall(r"^COPY\s+(\w+)/\s", text, flags=re.M))
    assert {p.rstrip("*") for p in include} <= copied


def test_k8s_images_are_pinned():
    for name, doc in k8s_docs():
        for c in containers(doc):
            assert ":" in c["image"] and not c["image"].endswith(":latest"), name
