"""A real browser: Debian Chromium, driven by Playwright, with a corpus WAV as its microphone.

The interview flow runs twice: over plain http on 127.0.0.1 (a secure context
because it is loopback), and over HTTPS from `earshot serve --tls self-signed`
under a name that is not loopback (earshot.test, which Chromium maps to
127.0.0.1), as a second device on the LAN sees it. Chromium trusts that one
certificate by its public key (--ignore-certificate-errors-spki-list), not by
ignoring certificate errors. On every page, a Content-Security-Policy
violation fails the test.
"""

import signal
import time
import wave
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from earshot.loadtest.wer import wer
from earshot.models.audio import read_audio
from earshot.server.at_rest import Sealer
from earshot.server.privacy import duration_words
from earshot.server.settings import Settings
from earshot.server.store_keys import session_key
from earshot.server.tls import spki_sha256
from tests.conftest import corpus_file, reference_text, start_server
from tests.tcp_relay import TcpRelay, tcp

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CLIP = "utterances/LJ001-0009.wav"
WER_BOUND = 0.2  # measured 0-8% for this clip; the browser adds its own audio processing
SCREENSHOT_DIR = Path(__file__).resolve().parent.parent / "test-artifacts"


def microphone_wav(tmp_path: Path) -> Path:
    """Silence, the clip, silence.

    Chromium starts playing the file at getUserMedia, before the call is
    connected, so the clip waits 2 s; the silence after it ends the utterance
    before the file loops.
    """
    path = tmp_path / "mic.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(16000 * 2 * 2) + read_audio(corpus_file(CLIP)) + bytes(16000 * 2 * 3))
    return path


@contextmanager
def chromium_page(tmp_path, extra_args: tuple[str, ...] = ()):
    SCREENSHOT_DIR.mkdir(exist_ok=True)
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (make test does)")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: apt-get install chromium (make test does)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone_wav(tmp_path)}",
                "--allow-loopback-in-peer-connection",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                *extra_args,
            ],
        )
        page = browser.new_page()
        violations: list[str] = []
        page.on("console", lambda message: "Content Security Policy" in message.text and violations.append(message.text))
        yield page
        browser.close()
        assert not violations, violations


def wait_for_js(page, expression: str, timeout: float) -> None:
    """page.wait_for_function, without eval: Playwright polls that predicate through eval, which the CSP refuses."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout / 1000:.0f} s: {expression}")
        page.wait_for_timeout(100)


@pytest.fixture
def browser_page(tmp_path):
    with chromium_page(tmp_path) as page:
        yield page


@dataclass
class Site:
    base_url: str
    chromium_args: tuple[str, ...] = ()


TLS_NAME = "earshot.test"


@pytest.fixture(scope="module")
def tls_site(redis_url, tmp_path_factory):
    """`earshot serve --tls self-signed`, opened as https://earshot.test:PORT with its certificate trusted."""
    data_dir = tmp_path_factory.mktemp("tls-server")
    srv = start_server(redis_url, data_dir, extra_args=("--tls", "self-signed", "--allowed-hosts", TLS_NAME))
    spki = spki_sha256((data_dir / "tls" / "self-signed-cert.pem").read_bytes())
    yield Site(
        f"https://{TLS_NAME}:{urlsplit(srv.base_url).port}",
        (f"--ignore-certificate-errors-spki-list={spki}", f"--host-resolver-rules=MAP {TLS_NAME} 127.0.0.1"),
    )
    srv.stop()


@pytest.fixture(params=["http", "https"])
def site(request) -> Site:
    if request.param == "http":
        return Site(request.getfixturevalue("server").base_url)
    return request.getfixturevalue("tls_site")


@pytest.fixture
def site_page(site, tmp_path):
    with chromium_page(tmp_path, site.chromium_args) as page:
        yield page


def test_speaking_into_the_page_shows_partials_finals_and_pace(site, site_page, tmp_path):
    page = site_page
    page.goto(site.base_url + "/")
    assert page.evaluate("window.isSecureContext")  # the microphone is only offered to secure pages
    page.get_by_test_id("role").select_option("data_scientist")
    page.get_by_test_id("difficulty").select_option("hard")
    page.get_by_test_id("start").click()

    wait_for_js(page, "window.earshot && window.earshot.state === 'live'", timeout=20000)
    wait_for_js(
        page, "window.earshot.events.some(e => e.type === 'partial' && (e.committed || e.tentative))", timeout=20000
    )
    transcript = page.get_by_test_id("transcript")
    transcript.locator(".final").first.wait_for(timeout=30000)
    # The clip may come as more than one final (the end-of-turn model can end an utterance at a comma's
    # pause): read the transcript's finals until they cover the clip, or the time is up.
    deadline = time.monotonic() + 15
    while True:
        text = " ".join(strip_times(line) for line in transcript.locator(".final").all_inner_texts())
        if wer([reference_text(CLIP)], [text]) <= WER_BOUND or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    pace = page.get_by_test_id("pace").inner_text()
    page.screenshot(path=str(SCREENSHOT_DIR / "browser-live.png"))

    assert wer([reference_text(CLIP)], [text]) <= WER_BOUND, text
    assert "w/s" in pace
    assert any(verdict in pace for verdict in ("Good pace", "Too slow", "Too fast")), pace

    ready = page.evaluate("window.earshot.events.find(e => e.type === 'ready')")
    assert ready["role"] == "data_scientist" and ready["difficulty"] == "hard" and ready["mode"] == "interview"

    # The interviewer: its words on the page, its question, and its voice on a remote track.
    greeting = page.get_by_test_id("agent").first
    greeting.wait_for(timeout=30000)
    assert "welcome" in greeting.inner_text().lower()
    page.get_by_test_id("question").wait_for(state="visible", timeout=60000)
    asked = page.evaluate("window.earshot.events.find(e => e.type === 'question')")
    assert asked["question_id"].startswith("ds-hard-"), asked
    assert asked["text"] in page.get_by_test_id("question").inner_text()
    assert page.evaluate("window.earshot.events.some(e => e.type === 'agent_audio_start')")
    assert page.evaluate(
        "document.querySelector('[data-testid=agent-audio]').srcObject.getAudioTracks().length"
    ) == 1
    page.screenshot(path=str(SCREENSHOT_DIR / "browser-interview.png"))

    page.get_by_test_id("stop").click()
    wait_for_js(page, "window.earshot.state === 'stopped'", timeout=10000)
    assert "Stopped" in page.get_by_test_id("status").inner_text()
    assert transcript.locator(".final").count() >= 1  # the transcript stays after Stop


def strip_times(final_line: str) -> str:
    """A final line reads "0:03 text 0.54 s": keep the words only."""
    words = final_line.split()
    if words and ":" in words[0]:
        words = words[1:]
    if len(words) >= 2 and words[-1] == "s":
        words = words[:-2]
    return " ".join(words)


def test_the_assist_overlay_follows_a_recorded_call(server, browser_page):
    """The overlay plays call-1.wav (agent left, customer right) as two tracks and shows the call live."""
    page = browser_page
    page.goto(server.base_url + "/assist.html")
    page.get_by_test_id("assist-source").select_option("file")
    page.get_by_test_id("assist-file").set_input_files(str(corpus_file("calls/call-1.wav")))
    page.get_by_test_id("assist-start").click()
    wait_for_js(page, "window.earshotAssist && window.earshotAssist.state === 'live'", timeout=20000)

    transcript = page.get_by_test_id("assist-transcript")
    transcript.locator(".final[data-speaker=agent]").first.wait_for(timeout=30000)
    transcript.locator(".final[data-speaker=customer]").first.wait_for(timeout=30000)
    wait_for_js(
        page,
        "window.earshotAssist.events.some(e => e.type === 'suggestion')"
        " && window.earshotAssist.events.some(e => e.type === 'call_metrics')"
        " && window.earshotAssist.events.some(e => e.type === 'intent' && e.speaker === 'customer')",
        timeout=30000,
    )
    ready = page.evaluate("window.earshotAssist.events.find(e => e.type === 'ready')")
    assert ready["mode"] == "assist" and sorted(ready["speakers"]) == ["agent", "customer"]
    for panel in ("assist-intents", "assist-topic", "assist-sentiment", "assist-suggestion", "assist-metrics"):
        assert page.get_by_test_id(panel).inner_text().strip(), f"{panel} is empty"
    suggestion = page.evaluate("[...window.earshotAssist.events].reverse().find(e => e.type === 'suggestion')")
    assert suggestion["text"][:30] in page.get_by_test_id("assist-suggestion").inner_text()
    # An error the call survives is a notice in the page's words (fed by hand: this call has none); a repeat counts up.
    for _ in range(2):
        page.evaluate("window.earshotAssist.handle({type: 'error', code: 'llm_timeout', message: 'slow'})")
    notice = page.locator("[data-role=notices] [data-code=llm_timeout]")
    assert "knowledge-base answer" in notice.inner_text() and notice.get_attribute("data-count") == "2"
    page.screenshot(path=str(SCREENSHOT_DIR / "browser-assist.png"))

    # The file ends, the call ends by itself, and the summary opens.
    link = page.get_by_test_id("assist-summary-link")
    link.wait_for(state="visible", timeout=40000)
    page.goto(urljoin(page.url, link.get_attribute("href")))
    summary = page.get_by_test_id("summary-transcript")
    summary.wait_for(timeout=15000)
    wait_for_js(page, "document.querySelector('[data-testid=summary-transcript]').innerText.length > 40", timeout=15000)
    assert page.get_by_test_id("summary-metrics").inner_text().strip()
    page.screenshot(path=str(SCREENSHOT_DIR / "browser-assist-summary.png"))


# Before any page script runs: getUserMedia records what the consent line said when it was called.
MICROPHONE_WATCH = """
window.micOpenedWith = [];
const openMicrophone = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => {
  const consent = document.querySelector("[data-testid=consent]");
  window.micOpenedWith.push(consent && !consent.hidden ? consent.innerText : null);
  return openMicrophone(constraints);
};
"""


def test_the_pages_say_what_is_stored_before_the_microphone_opens(server, browser_page):
    defaults = Settings()
    transcripts, reports = duration_words(defaults.retention_transcripts_s), duration_words(defaults.retention_reports_s)
    page = browser_page
    page.add_init_script(MICROPHONE_WATCH)
    for path, prefix, document in (("/", "", "report"), ("/assist.html", "assist-", "call summary")):
        page.goto(server.base_url + path)
        wait_for_js(page, "document.querySelector('[data-testid=consent]').innerText.includes(' days')", timeout=10000)
        consent = page.get_by_test_id("consent")
        said = consent.inner_text()
        assert consent.is_visible()
        assert f"stored for {transcripts} (the {document} for {reports})" in said, said
        assert "Card numbers, phone numbers" in said and "removed before anything is stored" in said
        assert page.evaluate("window.micOpenedWith") == []  # nothing opened before the click
        page.screenshot(path=str(SCREENSHOT_DIR / f"browser-consent-{prefix or 'interview-'}page.png"))
        page.get_by_test_id(prefix + "start").click()
        wait_for_js(page, "window.micOpenedWith.length > 0", timeout=20000)
        assert page.evaluate("window.micOpenedWith") == [said]  # the line was on the page when the microphone opened
        page.get_by_test_id(prefix + "stop").click()


def test_the_page_resumes_on_another_instance_when_its_own_drains(redis_url, tmp_path, browser_page):
    """Two instances behind a load balancer (a TCP relay: a first, b when a refuses). The page's call is on
    a; SIGTERM to a: after the grace the call is closed with `server_draining`, and the page resumes it
    at once, through the same URL, on b."""
    keys = tmp_path / "storage.keys"
    Sealer.from_settings(replace(Settings(), storage_key_file=str(keys)))  # one key file for both instances
    instances = [
        start_server(redis_url, tmp_path / name, extra_args=(
            "--instance-group", "browser-drain", "--instance-id", name, "--instance-ttl-s", "2",
            "--drain-grace-s", "3", "--storage-key-file", str(keys)))
        for name in ("a", "b")
    ]
    balancer = TcpRelay([tcp("127.0.0.1", urlsplit(server.base_url).port) for server in instances])
    page = browser_page
    try:
        page.goto(f"http://127.0.0.1:{balancer.port}/")
        page.get_by_test_id("mode").select_option("transcribe")
        page.get_by_test_id("start").click()
        wait_for_js(page, "window.earshot.state === 'live'", timeout=20000)
        wait_for_js(page, "window.earshot.events.some(e => e.type === 'final')", timeout=30000)
        assert page.evaluate("window.earshot.events.find(e => e.type === 'ready').instance") == "a"
        instances[0].process.send_signal(signal.SIGTERM)
        wait_for_js(page, "window.earshot.events.some(e => e.code === 'server_draining')", timeout=20000)
        wait_for_js(page, "window.earshot.events.filter(e => e.type === 'ready').length === 2", timeout=30000)
        resumed = page.evaluate("window.earshot.events.filter(e => e.type === 'ready')[1]")
        assert resumed["instance"] == "b" and resumed["resumed_finals"] >= 1
        wait_for_js(page, "window.earshot.state === 'live'", timeout=10000)
        instances[0].process.wait(timeout=30)
        assert instances[0].process.returncode == 0
    finally:
        balancer.cut()
        for server in instances:
            server.stop()


def call_twice(tmp_path: Path) -> Path:
    """calls/call-1.wav (agent left, customer right) played twice over: 42 s, long enough to lose an instance
    in its first half and go on in its second."""
    with wave.open(str(corpus_file("calls/call-1.wav"))) as call:
        params, frames = call.getparams(), call.readframes(call.getnframes())
    path = tmp_path / "call-twice.wav"
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes(frames + frames)
    return path


def stored_summary(redis_url: str, keys: Path, session_id: str) -> dict:
    """The summary a call last stored in Redis (a live call's 5 s checkpoint), unsealed as a worker would."""
    import json

    import redis

    raw = redis.Redis.from_url(redis_url).get(session_key(session_id, ":summary"))
    sealer = Sealer.from_settings(replace(Settings(), storage_key_file=str(keys)))
    return json.loads(sealer.unseal(session_id, raw.decode())) if raw else {}


def test_the_overlay_reconnects_by_itself_when_its_instance_dies_and_the_summary_covers_the_whole_call(
    redis_url, tmp_path, browser_page
):
    """Two instances behind a load balancer; the overlay plays a recorded call through a. a is SIGKILLed
    mid-call: the page sees its link drop, reconnects the same session through the same URL (b takes it
    once a's hold lapses), and b's agent starts from a's last checkpoint, so the summary stored when the
    recording ends has the lines from before the kill and after it, as one call."""
    keys = tmp_path / "storage.keys"
    Sealer.from_settings(replace(Settings(), storage_key_file=str(keys)))  # one key file for both instances
    instances = [
        start_server(redis_url, tmp_path / name, extra_args=(
            "--instance-group", "browser-kill", "--instance-id", name, "--instance-ttl-s", "2",
            "--storage-key-file", str(keys)))
        for name in ("a", "b")
    ]
    balancer = TcpRelay([tcp("127.0.0.1", urlsplit(server.base_url).port) for server in instances])
    page = browser_page
    events = "window.earshotAssist.events"
    try:
        page.goto(f"http://127.0.0.1:{balancer.port}/assist.html")
        page.get_by_test_id("assist-source").select_option("file")
        page.get_by_test_id("assist-file").set_input_files(str(call_twice(tmp_path)))
        page.get_by_test_id("assist-start").click()
        wait_for_js(page, f"{events}.some(e => e.type === 'final' && e.speaker === 'customer')", timeout=40000)
        assert page.evaluate(f"{events}.find(e => e.type === 'ready').instance") == "a"
        session_id = page.evaluate("window.earshotAssist.session")
        deadline = time.monotonic() + 15
        while not any(line["speaker"] == "customer" for line in stored_summary(redis_url, keys, session_id).get("transcript", [])):
            assert time.monotonic() < deadline, "no checkpoint of the customer's line"
            time.sleep(0.5)
        instances[0].kill()
        before = page.evaluate(f"{events}.filter(e => e.type === 'final').map(e => [e.seq, e.text])")

        wait_for_js(page, f"{events}.filter(e => e.type === 'ready').length === 2", timeout=40000)
        resumed = page.evaluate(f"{events}.filter(e => e.type === 'ready')[1]")
        assert resumed["instance"] == "b" and resumed["resumed_finals"] >= 2
        wait_for_js(page, "window.earshotAssist.state === 'ended' && window.earshotAssist.summaryUrl", timeout=60000)
        after = page.evaluate(f"{events}.filter(e => e.type === 'final' && e.seq > {max(seq for seq, _ in before)})"
                              ".map(e => [e.seq, e.text])")
        assert after, "nothing was heard after the reconnect"
        summary = stored_summary(redis_url, keys, session_id)
        lines = {line["seq"]: line["text"] for line in summary["transcript"]}
        assert all(lines.get(seq) == text for seq, text in [*before, *after]), (before, after, lines)
        assert {line["speaker"] for line in summary["transcript"] if line["seq"] <= len(before)} == {"agent", "customer"}
    finally:
        balancer.cut()
        for server in instances:
            server.stop()
