"""deploy/k8s is valid Kubernetes, and wired to what Earshot actually reads.

Offline and without a cluster: kubernetes-validate checks every manifest against the
OpenAPI schemas it bundles, in strict mode (an unknown field fails), for the oldest
Kubernetes these manifests claim and the newest the package knows. The rest reads the
manifests beside Earshot's own code: its Settings, its metrics, docker-compose.yml.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from earshot.server.metrics import ServerMetrics
from earshot.server.settings import Settings
from earshot.server.settings_sources import settings_from_env
from tests.conftest import REPO, free_port

K8S = REPO / "deploy" / "k8s"
# The oldest Kubernetes the manifests claim (README.md there), and the newest bundled schema.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
# Read without the EARSHOT_ prefix: REDIS_URL by Earshot's settings, FORWARDED_ALLOW_IPS by uvicorn.
UNPREFIXED = {"REDIS_URL", "FORWARDED_ALLOW_IPS"}
# Set only to be written into other variables as $(NAME); Earshot never reads them.
SUBSTITUTION_ONLY = {"POD_IP"}
FIELD_REFS = {"metadata.name": "earshot-5f7d9c8b4-x2k9q", "status.podIP": "10.244.3.17"}


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def find(kind: str, name: str) -> dict:
    found = [d for p in manifest_files() for d in documents(p) if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(kind: str, name: str) -> dict:
    return find(kind, name)["spec"]["template"]["spec"]


def container(spec: dict, name: str) -> dict:
    return next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name)


def earshot() -> dict:
    return container(pod_spec("Deployment", "earshot"), "earshot")


def resolved_env(env: list[dict]) -> dict[str, str]:
    """The environment as the kubelet makes it: $(NAME) of an earlier variable is replaced, others kept."""
    resolved: dict[str, str] = {}
    for var in env:
        if "value" in var:
            value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: resolved.get(m[1], m[0]), var["value"])
        elif "fieldRef" in var["valueFrom"]:
            value = FIELD_REFS[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            value = "secret-" + var["valueFrom"]["secretKeyRef"]["name"]
        resolved[var["name"]] = value
    return resolved


def settings() -> Settings:
    return settings_from_env(resolved_env(earshot()["env"]))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_strictly(path: Path, version: str):
    for doc in documents(path):
        where = f"{path.name} {doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:  # a custom resource: no operator is assumed
            pytest.fail(f"{where}: {e.message}")


def test_the_validator_refuses_an_unknown_field():
    """Strict mode is on: a misspelt field (what kubectl would reject) fails, from the bundled schemas."""
    deployment = find("Deployment", "earshot")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_each_kustomization_lists_exactly_the_files_beside_it():
    folders = {p.parent for p in K8S.rglob("*.yaml")}
    for folder in folders:
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
        beside = {p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"}
        assert sorted(kustomization["resources"]) == sorted(beside), folder
        for name in beside:  # each parses, and each document is a named resource
            assert all(doc["apiVersion"] and doc["metadata"]["name"] for doc in documents(folder / name)), name


def test_every_earshot_env_var_is_one_earshot_reads():
    settings_names = {"EARSHOT_" + f.name.upper() for f in dataclasses.fields(Settings)}
    names = [var["name"] for var in earshot()["env"]]
    assert len(names) == len(set(names)), "a variable set twice: the later one wins in silence"
    unknown = set(names) - settings_names - UNPREFIXED - SUBSTITUTION_ONLY
    assert not unknown, f"not Earshot settings: {sorted(unknown)}"
    # Nor may the kubelet add any: Service `earshot` would make EARSHOT_PORT=tcp://<ip>:8000 and the like.
    assert pod_spec("Deployment", "earshot")["enableServiceLinks"] is False


def test_substitution_only_vars_are_defined_before_use_and_used():
    env = earshot()["env"]
    defined: set[str] = set()
    used: set[str] = set()
    for var in env:
        for ref in re.findall(r"\$\(([^)]*)\)", var.get("value", "")):
            assert ref in defined, f"{var['name']} uses $({ref}) before it is set: the kubelet would leave it as is"
            used.add(ref)
        defined.add(var["name"])
    assert SUBSTITUTION_ONLY <= defined and SUBSTITUTION_ONLY <= used


def test_earshot_env_is_valid_settings():
    s = settings()
    assert (s.host, s.auth, s.llm_backend, s.llm_url) == ("0.0.0.0", "on", "http", "http://vllm:8000/v1")
    assert s.redis_url == "redis://redis:6379/0" and s.api_keys_file and s.storage_key_file
    assert s.instance_id == FIELD_REFS["metadata.name"]  # the pod's name
    assert s.advertise_url == f"http://{FIELD_REFS['status.podIP']}:{s.port}"
    assert s.llm_model in container(pod_spec("Deployment", "vllm"), "vllm")["args"]
    assert s.max_live_calls >= 1 and s.asr_workers >= 1 and s.asr_threads >= 1  # not sized from the node's CPUs


def test_every_earshot_port_is_earshot_port():
    port, c = settings().port, earshot()
    assert [p["containerPort"] for p in c["ports"]] == [port]
    probes = {name: c[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {name: (g["port"], g["path"]) for name, g in probes.items()} == {
        "startupProbe": (port, "/healthz/live"), "livenessProbe": (port, "/healthz/live"),
        "readinessProbe": (port, "/healthz/ready")}
    # Earshot answers loopback names whatever EARSHOT_ALLOWED_HOSTS says; the kubelet's default Host is the pod IP.
    assert all({"name": "Host", "value": "localhost"} in g["httpHeaders"] for g in probes.values())
    service = find("Service", "earshot")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port]
    backends = [path["backend"]["service"] for rule in find("Ingress", "earshot")["spec"]["rules"]
                for path in rule["http"]["paths"]]
    assert backends == [{"name": "earshot", "port": {"number": service["spec"]["ports"][0]["port"]}}]


def test_the_autoscaled_metric_is_one_earshot_exports():
    hpa = find("HorizontalPodAutoscaler", "earshot")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "earshot"}
    [metric] = hpa["metrics"]
    name = metric["pods"]["metric"]["name"]
    rendered = ServerMetrics(live_sessions=lambda: 0, asr_queue_depth=lambda: 0).render().decode()
    assert f"# TYPE {name} gauge" in rendered.splitlines()
    rules = yaml.safe_load(find("ConfigMap", "earshot-adapter-config")["data"]["config.yaml"])["rules"]
    assert [rule["name"]["as"] for rule in rules] == [name] and name in rules[0]["seriesQuery"]
    # Scale out before admission control refuses calls: the target is below each pod's cap.
    assert 0 < float(metric["pods"]["target"]["averageValue"]) < settings().max_live_calls
    assert hpa["minReplicas"] >= 2
    assert find("PodDisruptionBudget", "earshot")["spec"]["selector"] == find("Deployment", "earshot")["spec"]["selector"]


def test_drain_grace_ends_before_the_kill():
    grace = pod_spec("Deployment", "earshot")["terminationGracePeriodSeconds"]
    assert 0 < settings().drain_grace_s < grace


def test_the_storage_key_copy_is_the_file_earshot_reads():
    """The init container copies the shared key file from its Secret, owner-only, to EARSHOT_STORAGE_KEY_FILE."""
    spec = pod_spec("Deployment", "earshot")
    command = container(spec, "storage-key")["command"]
    assert command[:3] == ["install", "-m", "0600"] and command[-1] == settings().storage_key_file
    secret_volumes = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert secret_volumes["storage-key-secret"] == "earshot-storage-keys"


def test_turn_is_shared_with_coturn():
    coturn = container(pod_spec("DaemonSet", "coturn"), "coturn")
    secret = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in coturn["env"] if "secretKeyRef" in v.get("valueFrom", {})}
    mine = next(v["valueFrom"]["secretKeyRef"] for v in earshot()["env"] if v["name"] == "EARSHOT_TURN_SECRET")
    assert secret["TURN_SECRET"] == mine and "--static-auth-secret=$(TURN_SECRET)" in coturn["args"]
    realm = next(a.split("=", 1)[1] for a in coturn["args"] if a.startswith("--realm="))
    assert f"turn:{realm}:3478?transport=udp" in settings().ice_server_urls


def test_the_manifests_mirror_docker_compose():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    assert container(pod_spec("StatefulSet", "redis"), "redis")["args"] == compose["redis"]["command"]
    vllm = container(pod_spec("Deployment", "vllm"), "vllm")
    assert (vllm["image"], vllm["command"], vllm["args"]) == (
        compose["vllm"]["image"], compose["vllm"]["entrypoint"], compose["vllm"]["command"])
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    turn = yaml.safe_load((REPO / "docker-compose.turn.yml").read_text(encoding="utf-8"))["services"]["coturn"]
    fixed = [a for a in turn["command"] if "${" not in a and "peer-ip" not in a]
    assert set(fixed) <= set(container(pod_spec("DaemonSet", "coturn"), "coturn")["args"])
    assert find("DaemonSet", "coturn")["spec"]["template"]["spec"]["hostNetwork"] is True


def test_prometheus_scrapes_the_metrics_proxy():
    deployment = find("Deployment", "earshot")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    proxy = container(deployment["spec"]["template"]["spec"], "metrics-proxy")
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert proxy["command"][-2:] == [annotations["prometheus.io/port"], f"http://127.0.0.1:{settings().internal_port}/metrics"]
    assert [p["containerPort"] for p in proxy["ports"]] == [int(annotations["prometheus.io/port"])]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:  # an error status; a refused connection is URLError, raised
        return e.code, b""


def test_the_metrics_proxy_serves_metrics_and_nothing_else(tmp_path: Path):
    class Upstream(BaseHTTPRequestHandler):
        def do_GET(self):
            body = ServerMetrics(live_sessions=lambda: 3, asr_queue_depth=lambda: 0).render()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    script = tmp_path / "metrics_proxy.py"
    script.write_text(find("ConfigMap", "earshot-metrics-proxy")["data"]["metrics_proxy.py"], encoding="utf-8")
    port = free_port()
    proxy = subprocess.Popen([sys.executable, str(script), str(port), f"http://127.0.0.1:{upstream.server_port}/metrics"])
    try:
        deadline = time.monotonic() + 20
        while proxy.poll() is None and time.monotonic() < deadline:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/metrics")
                break
            except urllib.error.URLError:  # not listening yet
                time.sleep(0.1)
        else:
            pytest.fail("the proxy did not start")
        assert status == 200 and b"earshot_live_sessions 3.0" in body
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 404
        upstream.shutdown()
        upstream.server_close()
        assert _get(f"http://127.0.0.1:{port}/metrics")[0] == 502
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
