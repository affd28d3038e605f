"""The wheel a user installs: one `earshot` namespace, the client inside it, a server that starts and takes a call.

The wheel is built from this checkout and installed into a fresh virtual
environment. Its dependencies (torch, faster-whisper, the model packages...)
are made visible to that environment through a path entry to the test
environment's site-packages rather than downloaded a second time; the
earshot code and the client files come from the wheel alone, and the server
runs from a folder outside the checkout.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from earshot.loadtest.caller import HeadlessCaller
from earshot.loadtest.server_process import ServerProcess, free_port
from earshot.models.audio import read_audio
from tests.calls import call_with_pcm
from tests.conftest import REPO, corpus_file


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the source: setuptools writes build/ beside what it builds, and a stale
    build/ in the checkout would slip deleted modules into later wheels."""
    source = tmp_path_factory.mktemp("source") / "earshot"
    ignored = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".earshot", "test-artifacts", "results")
    shutil.copytree(REPO, source, ignore=ignored)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (built,) = out.glob("earshot-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # A plain path entry: the test environment's packages are importable, but its .pth files
    # (among them the editable install of this checkout) are not run.
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    return root


def test_the_wheel_holds_one_namespace_and_the_client(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"earshot", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for page in ("index.html", "assist.html", "report.html", "summary.html", "calls.html", "calls.js", "charts.js", "app.js", "style.css"):
        assert f"earshot/client/{page}" in names, page
    assert "earshot/agents/questions/data_scientist.json" in names
    assert "earshot/models/intent_heads/interview.json" in names
    assert not any(name.startswith("earshot/__init__") for name in names)  # a namespace package
    assert not any("/bench/" in name or name.startswith("earshot/tests") for name in names)


def test_the_installed_package_runs_from_the_venv_not_the_checkout(venv: Path, tmp_path: Path):
    code = "import earshot.server, earshot.client, earshot.loadtest.cli; print(earshot.server.__file__)"
    result = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip().startswith(str(venv)), result.stdout
    help_text = subprocess.run([str(venv / "bin" / "earshot"), "--help"], cwd=tmp_path, capture_output=True, text=True, check=True)
    for command in ("serve", "transcribe", "train-intent", "loadtest"):
        assert command in help_text.stdout


@pytest.fixture(scope="module")
def installed_server(venv: Path, redis_url: str, tmp_path_factory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("installed-server")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    log_path = folder / "server.log"
    process = subprocess.Popen(
        [str(venv / "bin" / "earshot"), "serve", "--port", str(port), "--redis-url", redis_url,
         "--data-dir", str(folder), "--ice-loopback-only"],
        cwd=folder, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
    )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(server.base_url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        server.stop()
        pytest.fail(f"the installed server did not come up:\n{server.log()}")
    yield server
    server.stop()


def test_the_installed_server_serves_the_pages_and_the_api(installed_server: ServerProcess):
    # The report page of a session id of the documented form (any other is a 404).
    for path in ("/", "/assist.html", "/calls.html", "/charts.js", "/sessions/0123456789abcdef/report", "/app.js"):
        response = httpx.get(installed_server.base_url + path, timeout=10)
        assert response.status_code == 200, (path, response.text[:200])
    assert "<html" in httpx.get(installed_server.base_url + "/", timeout=10).text.lower()
    created = httpx.post(installed_server.base_url + "/api/sessions", json={"mode": "transcribe", "role": "data_scientist"})
    assert created.status_code == 201


@pytest.mark.slow
def test_the_installed_server_takes_a_call(installed_server: ServerProcess):
    async def one_call() -> HeadlessCaller:
        caller = HeadlessCaller(installed_server.base_url, read_audio(corpus_file("utterances/LJ001-0002.wav")), mode="transcribe")
        await call_with_pcm(caller)
        await caller.hangup()
        return caller

    caller = asyncio.run(one_call())
    assert caller.of_type("final"), caller.events
