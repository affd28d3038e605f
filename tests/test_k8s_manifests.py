"""deploy/k8s is valid Kubernetes, and wired to what Earshot actually reads.

Offline and without a cluster: kubernetes-validate checks every manifest against the
OpenAPI schemas it bundles, in strict mode (an unknown field fails), for the oldest
Kubernetes these manifests claim and the newest the package knows. The rest reads the
manifests beside Earshot's own code: its Settings, its metrics, docker-compose.yml.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from earshot.server.metrics import ServerMetrics
from earshot.server.settings import Settings
from earshot.server.settings_sources import settings_from_env
from tests.conftest import REPO

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
    assert [p["containerPort"] for p in c["ports"] if p["name"] == "http"] == [port]
    probes = {name: c[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {name: (g["port"], g["path"]) for name, g in probes.items()} == {
        "startupProbe": (port, "/healthz/live"), "livenessProbe": (port, "/healthz/live"),
        "readinessProbe": (port, "/healthz/ready")}
    # Earshot answers loopback names whatever EARSHOT_ALLOWED_HOSTS says; the kubelet's default Host is the pod IP.
    assert all({"name": "Host", "value": "localhost"} in g["httpHeaders"] for g in probes.values())
    service = find("Service", "earshot")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port]  # not the internal port
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


def test_prometheus_scrapes_the_internal_port():
    """Prometheus scrapes EARSHOT_INTERNAL_PORT on the pod's address: no admin key, and no proxy in between."""
    deployment = find("Deployment", "earshot")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    s = settings()
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert s.internal_port and annotations["prometheus.io/port"] == str(s.internal_port)
    # Declared on the Earshot container, TCP; and bound to the pod's address, not the default loopback.
    ports = {p["name"]: (p["containerPort"], p.get("protocol", "TCP")) for p in earshot()["ports"]}
    assert ports == {"http": (s.port, "TCP"), "metrics": (s.internal_port, "TCP")}
    assert s.internal_host == "0.0.0.0"


# --- NetworkPolicy, evaluated as the API documents it -----------------------------------------------
# Enough of the semantics for these manifests: policies in the kustomization's namespace, ingress rules,
# podSelector / namespaceSelector / ipBlock peers, numbered, ranged and named ports.

@dataclasses.dataclass(frozen=True)
class Source:
    """A connection's source: a pod (namespace and labels), or an address outside the pod network (a node)."""

    ip: str
    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


def namespace() -> str:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))["namespace"]


def network_policies() -> list[dict]:
    return [d for p in manifest_files() for d in documents(p) if d["kind"] == "NetworkPolicy"]


def pod_labels(kind: str, name: str) -> dict[str, str]:
    return find(kind, name)["spec"]["template"]["metadata"]["labels"]


def earshot_pod(ip: str = FIELD_REFS["status.podIP"]) -> Source:
    return Source(ip, namespace(), tuple(pod_labels("Deployment", "earshot").items()))


def matches(selector: dict, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        present, values = e["key"] in labels, e.get("values", [])
        ok = {"In": present and labels.get(e["key"]) in values, "NotIn": labels.get(e["key"]) not in values,
              "Exists": present, "DoesNotExist": not present}[e["operator"]]
        if not ok:
            return False
    return True


def peer_matches(peer: dict, source: Source) -> bool:
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(source.ip)
        return ip in ipaddress.ip_network(peer["ipBlock"]["cidr"]) and not any(
            ip in ipaddress.ip_network(c) for c in peer["ipBlock"].get("except", []))
    if source.namespace is None:  # a node or the outside: only ipBlock peers (or no peers) admit it
        return False
    if "namespaceSelector" in peer:
        namespace_ok = matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": source.namespace})
    else:  # a podSelector alone means the policy's own namespace
        namespace_ok = source.namespace == namespace()
    return namespace_ok and matches(peer.get("podSelector", {}), dict(source.labels))


def port_matches(entry: dict, port: int, protocol: str, container_ports: list[dict]) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    if "port" not in entry:  # every port of that protocol
        return True
    if isinstance(entry["port"], str):  # a named port: the destination container's port of that name
        return any(p["name"] == entry["port"] and p["containerPort"] == port and p.get("protocol", "TCP") == protocol
                   for p in container_ports if "name" in p)
    return entry["port"] <= port <= entry.get("endPort", entry["port"])


def reachable(source: Source, kind: str, name: str, port: int, protocol: str = "TCP",
              policies: list[dict] | None = None) -> bool:
    """Whether `source` may open port/protocol on a pod of workload kind/name, under the policies."""
    labels = pod_labels(kind, name)
    container_ports = [p for c in pod_spec(kind, name)["containers"] for p in c.get("ports", [])]
    selecting = [p["spec"] for p in (network_policies() if policies is None else policies)
                 if p["metadata"].get("namespace", namespace()) == namespace()
                 and "Ingress" in p["spec"].get("policyTypes", ["Ingress"]) and matches(p["spec"]["podSelector"], labels)]
    if not selecting:  # no policy isolates the pod: everything reaches it
        return True
    return any(
        (not rule.get("from") or any(peer_matches(peer, source) for peer in rule["from"]))
        and (not rule.get("ports") or any(port_matches(e, port, protocol, container_ports) for e in rule["ports"]))
        for spec in selecting for rule in spec.get("ingress", []))


INGRESS_CONTROLLER = Source("10.244.1.5", "ingress-nginx", (("app.kubernetes.io/name", "ingress-nginx"),))
PROMETHEUS = Source("10.244.2.9", "monitoring", (("app.kubernetes.io/name", "prometheus"),))
NODE = Source("10.0.0.12")  # coturn (host network) on an edge node, or the kubelet
OTHER_POD = Source("10.244.4.4", "default", (("app", "something-else"),))


def test_earshot_pods_reach_each_other_on_their_http_port():
    """An instance hands a request to the one that holds the call, at its EARSHOT_ADVERTISE_URL (pod IP, 8000)."""
    s = settings()
    assert s.advertise_url.endswith(f":{s.port}")
    assert reachable(earshot_pod("10.244.5.20"), "Deployment", "earshot", s.port)


def test_earshot_http_and_media_stay_open():
    """The ingress controller and the probes reach port 8000; call media (UDP, any port) arrives from coturn."""
    port = settings().port
    for source in (INGRESS_CONTROLLER, NODE, OTHER_POD, PROMETHEUS):
        assert reachable(source, "Deployment", "earshot", port), source
        assert all(reachable(source, "Deployment", "earshot", p, "UDP") for p in (1024, 40000, 65535)), source


def test_only_the_monitoring_namespace_reaches_the_internal_port():
    s = settings()
    [policy] = [p for p in network_policies() if matches(p["spec"]["podSelector"], pod_labels("Deployment", "earshot"))]
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in peers
    assert reachable(PROMETHEUS, "Deployment", "earshot", s.internal_port)
    for source in (INGRESS_CONTROLLER, NODE, OTHER_POD, earshot_pod()):
        assert not reachable(source, "Deployment", "earshot", s.internal_port), source


def test_redis_and_vllm_answer_earshot_only():
    for kind, name, port in (("StatefulSet", "redis", 6379), ("Deployment", "vllm", 8000)):
        assert reachable(earshot_pod(), kind, name, port), name
        for source in (INGRESS_CONTROLLER, PROMETHEUS, NODE, OTHER_POD):
            assert not reachable(source, kind, name, port), (name, source)


def test_a_policy_that_forgot_the_pods_would_cut_the_hop():
    """The reachability check can fail: port 8000 opened to the ingress controller alone keeps pods apart."""
    policies = [dict(p) for p in network_policies()]
    for i, policy in enumerate(policies):
        if policy["metadata"]["name"] == "earshot":
            narrowed = [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
                         "ports": [{"port": "http", "protocol": "TCP"}]}]
            policies[i] = {**policy, "spec": {**policy["spec"], "ingress": narrowed}}
    port = settings().port
    assert reachable(INGRESS_CONTROLLER, "Deployment", "earshot", port, policies=policies)
    assert not reachable(earshot_pod(), "Deployment", "earshot", port, policies=policies)
    assert not reachable(INGRESS_CONTROLLER, "Deployment", "earshot", settings().internal_port, policies=policies)


# --- the analytics worker (analytics-worker.yaml) --------------------------------------------------

WORKER = ("Deployment", "earshot-analytics-worker")


def worker() -> dict:
    return container(pod_spec(*WORKER), "analytics-worker")


def worker_settings() -> Settings:
    return settings_from_env(resolved_env(worker()["env"]))


def worker_pod() -> Source:
    return Source("10.244.6.30", namespace(), tuple(pod_labels(*WORKER).items()))


def test_the_analytics_worker_runs_the_earshot_image_on_earshots_redis_and_keys():
    c, s, ours = worker(), settings(), worker_settings()
    assert c["image"] == earshot()["image"] and c["command"] == ["earshot", "analytics-worker"]
    settings_names = {"EARSHOT_" + f.name.upper() for f in dataclasses.fields(Settings)}
    assert not {v["name"] for v in c["env"]} - settings_names - UNPREFIXED
    assert pod_spec(*WORKER)["enableServiceLinks"] is False
    assert (ours.redis_url, ours.storage_key_file, ours.retention_reports_s) == (s.redis_url, s.storage_key_file, s.retention_reports_s)
    # The key file comes from the same Secret, copied the same way.
    copy = container(pod_spec(*WORKER), "storage-key")
    assert copy["command"] == container(pod_spec("Deployment", "earshot"), "storage-key")["command"]
    assert copy["command"][-1] == ours.storage_key_file
    secrets = {v["secret"]["secretName"] for v in pod_spec(*WORKER)["volumes"] if "secret" in v}
    assert secrets == {"earshot-storage-keys"}  # no API keys nor TURN secret: it serves no caller


def test_the_worker_is_not_an_earshot_pod():
    """Its pods must not join the earshot Deployment's selector, the Service, or the disruption budget."""
    labels = pod_labels(*WORKER)
    for kind, name in (("Deployment", "earshot"), ("PodDisruptionBudget", "earshot")):
        assert not matches(find(kind, name)["spec"]["selector"], labels), kind
    assert not matches({"matchLabels": find("Service", "earshot")["spec"]["selector"]}, labels)


def test_prometheus_scrapes_the_workers_metrics_port():
    annotations = find(*WORKER)["spec"]["template"]["metadata"]["annotations"]
    ours = worker_settings()
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(ours.analytics_metrics_port)
    assert [(p["name"], p["containerPort"]) for p in worker()["ports"]] == [("metrics", ours.analytics_metrics_port)]
    assert ours.internal_host == "0.0.0.0"


def test_the_worker_reaches_redis_and_only_monitoring_reaches_it():
    assert reachable(worker_pod(), "StatefulSet", "redis", 6379)
    assert not reachable(worker_pod(), "Deployment", "vllm", 8000)
    port = worker_settings().analytics_metrics_port
    assert reachable(PROMETHEUS, *WORKER, port)
    for source in (INGRESS_CONTROLLER, NODE, OTHER_POD, earshot_pod()):
        assert not reachable(source, *WORKER, port), source
