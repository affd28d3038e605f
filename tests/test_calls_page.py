"""The manager's calls page (client/calls.html) in real Chromium, over real ended calls.

Two assist calls from `calls/call-1.wav` run at once on a server with `--auth on`: the
whole call (~24 s) and its first SHORT_S seconds (a call hung up early), both by one agent
of a team of this module's own. Both are ended (DELETE), one worker run stores their facts,
then a supervisor of that team opens /calls.html: the page asks for a key, the table lists
both calls with the topic and duration their facts hold, the search box and the agent filter
narrow it, every chart has a mark for each datum, and a call's summary link opens its summary.
"""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest

from earshot.loadtest.caller import HeadlessCaller
from tests.auth_fixtures import write_api_keys
from tests.calls import utterances_settled
from tests.conftest import start_server
from tests.test_assist_call import TAIL_S, call_channels, run_command, worker_args
from tests.test_browser import SCREENSHOT_DIR, chromium_page, wait_for_js

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHORT_S = 9.0  # the early hang-up: the agent's greeting and the customer's first words
RUN = secrets.token_hex(3)  # names of this module's own: the Redis is shared with other modules
TEAM = f"blue-{RUN}"
AGENT, LEAD, CANDIDATE, OTHER_LEAD = f"agent-{RUN}", f"lead-{RUN}", f"cand-{RUN}", f"lead-red-{RUN}"
IDENTITIES = {AGENT: ("agent", TEAM), LEAD: ("supervisor", TEAM), CANDIDATE: ("candidate", TEAM),
              OTHER_LEAD: ("supervisor", f"red-{RUN}")}


@pytest.fixture(scope="module")
def keys_and_site(redis_url, tmp_path_factory):
    path = tmp_path_factory.mktemp("calls-keys") / "api-keys.toml"
    keys = write_api_keys(path, IDENTITIES)
    # No voice and no redaction: an assist call needs neither, and the server starts sooner.
    site = start_server(redis_url, tmp_path_factory.mktemp("calls-page"), extra_args=(
        "--auth", "on", "--api-keys-file", str(path), "--no-tts-enabled",
        "--redact-interview", "none", "--redact-transcribe", "none", "--redact-assist", "none"))
    yield keys, site
    site.stop()


async def place(base_url: str, speakers: dict[str, bytes], credential: str) -> str:
    """One assist call of `speakers`' audio, ended with its DELETE: its session id."""
    duration = len(speakers["agent"]) / 2 / 16000
    caller = HeadlessCaller(base_url, speakers["agent"], mode="assist", speakers=speakers, credential=credential)
    try:
        await caller.connect()
        await caller.wait_until(lambda c: c.track.audio_clock_s >= duration + TAIL_S, timeout=duration + 30)
        await caller.wait_until(utterances_settled, timeout=30)
        await caller.hangup(end_session=True, keep_api=True)  # the DELETE returns once the summary is stored
    finally:
        await caller.close_api()
    return caller.session_id


async def place_both(base_url: str, credential: str) -> tuple[str, str]:
    speakers, _ = call_channels()
    cut = int(SHORT_S * 16000) * 2
    short = {speaker: pcm[:cut] for speaker, pcm in speakers.items()}
    whole_id, short_id = await asyncio.gather(place(base_url, speakers, credential), place(base_url, short, credential))
    return whole_id, short_id


@pytest.fixture(scope="module")
def ended_calls(keys_and_site, redis_url):
    """{session id: facts} of the two calls, after one worker run; and which is the whole one."""
    keys, site = keys_and_site
    whole_id, short_id = asyncio.run(place_both(site.base_url, keys[AGENT]))
    done = run_command("analytics-worker", "--until-idle", "--consumer", f"calls-page-{RUN}", *worker_args(site, redis_url))
    assert done.returncode == 0, done.stderr
    lead = {"Authorization": f"Bearer {keys[LEAD]}"}
    facts = {}
    for session_id in (whole_id, short_id):
        answer = httpx.get(f"{site.base_url}/api/calls/{session_id}", headers=lead, timeout=10)
        assert answer.status_code == 200, answer.text
        facts[session_id] = answer.json()
    listed = httpx.get(f"{site.base_url}/api/calls", params={"agent": AGENT}, headers=lead, timeout=10).json()["calls"]
    assert {c["session_id"] for c in listed} == {whole_id, short_id}
    # "calls read": the agent their own, the team's supervisor the team's (above), another team's supervisor none.
    def seen_by(name: str) -> set[str]:
        answer = httpx.get(f"{site.base_url}/api/calls", headers={"Authorization": f"Bearer {keys[name]}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        return {c["session_id"] for c in answer.json()["calls"]}
    assert seen_by(AGENT) == {whole_id, short_id} and seen_by(OTHER_LEAD) == set()
    other = httpx.get(f"{site.base_url}/api/calls/{whole_id}", headers={"Authorization": f"Bearer {keys[OTHER_LEAD]}"})
    assert other.status_code == 404 and other.json()["error"]["code"] == "unknown_call"
    assert facts[short_id]["handle_time_s"] < facts[whole_id]["handle_time_s"]
    return facts, whole_id, short_id


def rows(page) -> list[str]:
    return page.eval_on_selector_all("[data-testid=calls-table] tbody tr", "rows => rows.map(r => r.dataset.sessionId)")


def marks(page, chart: str) -> list[dict]:
    return page.eval_on_selector_all(
        f"[data-testid={chart}] svg .mark", "marks => marks.map(m => ({label: m.dataset.label, value: Number(m.dataset.value)}))"
    )


def clock(seconds: float) -> str:
    total = int(seconds)
    return f"{total // 60}:{total % 60:02d}"


def wait_for_rows(page, count: int) -> None:
    wait_for_js(page, f"document.querySelectorAll('[data-testid=calls-table] tbody tr').length === {count}"
                      " && document.body.dataset.state === 'ready'", 10_000)


def test_the_manager_finds_plots_and_opens_the_calls(ended_calls, keys_and_site, tmp_path):
    facts, whole_id, short_id = ended_calls
    keys, site = keys_and_site
    with chromium_page(tmp_path) as page:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{site.base_url}/calls.html")

        # With auth on and no key yet: a 401, the "Access key" field; a candidate's key: a 403, asked again.
        page.wait_for_selector("[data-testid=access-key] input")
        assert page.get_attribute("[data-testid=calls-error]", "data-status") == "401"
        page.fill("[data-testid=access-key] input", keys[CANDIDATE])
        page.click("[data-testid=access-key] button")
        wait_for_js(page, "document.querySelector('[data-testid=calls-error]').dataset.status === '403'", 10_000)
        page.fill("[data-testid=access-key] input", keys[LEAD])
        page.click("[data-testid=access-key] button")
        wait_for_rows(page, 2)  # the team's two calls, newest first
        assert page.is_hidden("[data-testid=calls-error]")
        assert set(rows(page)) == {whole_id, short_id}

        for session_id, call in facts.items():
            row = f"tr[data-session-id='{session_id}']"
            label = call["live"]["topic_label"]
            assert page.inner_text(f"{row} [data-col=topic]") == ("Unclear" if label == "unclear" else label)
            assert float(page.get_attribute(f"{row} [data-col=duration]", "data-seconds")) == call["handle_time_s"]
            assert page.inner_text(f"{row} [data-col=duration]") == clock(call["handle_time_s"])
            assert page.inner_text(f"{row} [data-col=agent]") == AGENT
            assert page.inner_text(f"{row} [data-col=escalated]").startswith("Yes" if call["escalated"] else "No")
            chips = page.eval_on_selector_all(f"{row} [data-col=intents] .as-chip", "c => c.map(x => x.dataset.intent)")
            assert sorted(chips) == sorted(call["live"]["intent_counts"])

        # The charts: a mark per topic, per call's sentiment, per call in the handle-time bins, per intent heard.
        calls = list(facts.values())
        topics = marks(page, "chart-topics")
        assert sum(m["value"] for m in topics) == 2
        assert {m["label"] for m in topics} == {"Unclear" if c["live"]["topic_label"] == "unclear" else c["live"]["topic_label"]
                                                for c in calls}
        assert sum(m["value"] for m in marks(page, "chart-handle")) == 2
        scored = [c for c in calls if c["sentiment_mean"] is not None]
        assert scored, "call-1's customer says something scored"
        assert sorted(m["value"] for m in marks(page, "chart-sentiment")) == sorted(c["sentiment_mean"] for c in scored)
        heard = sorted(label for c in calls for label in c["live"]["intent_counts"])
        intents = marks(page, "chart-intents")
        assert sum(m["value"] for m in intents) == len(heard) > 0
        escalated = [c for c in calls if c["escalated"]]
        assert sum(m["value"] for m in marks(page, "chart-escalations")) == len(escalated)
        if not escalated:
            assert page.inner_text("[data-testid=chart-escalations]").strip().endswith("No call escalated.")
        page.screenshot(path=str(SCREENSHOT_DIR / "calls-page.png"), full_page=True)

        # The search box asks the server (q=): the short call's id narrows the table to it; nonsense empties it.
        page.fill("[data-testid=calls-search]", short_id[:10])
        wait_for_rows(page, 1)
        assert rows(page) == [short_id]
        page.fill("[data-testid=calls-search]", "no call says this")
        page.wait_for_selector("[data-testid=calls-empty]:not([hidden])")
        assert "No call matches" in page.inner_text("[data-testid=calls-empty]")
        page.fill("[data-testid=calls-search]", "")
        wait_for_rows(page, 2)
        page.select_option("[data-testid=calls-agent]", AGENT)
        wait_for_rows(page, 2)
        # The intent filter: an intent heard in one call only narrows the table to it; one heard in both keeps both.
        heard_in = {label: {sid for sid, c in facts.items() if label in c["live"]["intent_counts"]} for label in heard}
        label = min(heard_in, key=lambda name: (len(heard_in[name]), name))
        page.select_option("[data-testid=calls-intent]", label)
        wait_for_rows(page, len(heard_in[label]))
        assert set(rows(page)) == heard_in[label]
        page.select_option("[data-testid=calls-intent]", "")
        wait_for_rows(page, 2)

        # The whole call's summary link opens its summary, read with the supervisor's key.
        page.click(f"tr[data-session-id='{whole_id}'] [data-testid=summary-link]")
        page.wait_for_url(f"**/sessions/{whole_id}/summary")
        wait_for_js(page, "['ready', 'error'].includes(document.body.dataset.state)", 15_000)
        assert page.is_hidden("[data-testid=summary-error]"), page.inner_text("[data-testid=summary-error]")
        assert facts[whole_id]["live"]["topic_label"] in page.inner_text("[data-testid=summary-topic]")
        assert errors == []
