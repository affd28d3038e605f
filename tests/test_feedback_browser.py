"""The overlay's one-click intent correction in Chromium, on a real call: the first 12 s of call-1.wav (one turn each).

After the clicks: the "Customer wants" card, the read-back a reconnect does, and the summary page (its lines and
its intent counts) show the correction."""

import wave
from collections import Counter
from pathlib import Path
from urllib.parse import urljoin

import pytest

from earshot.server.feedback_store import load_corrections
from earshot.server.settings import Settings
from tests.conftest import corpus_file
from tests.test_browser import chromium_page, wait_for_js
from tests.test_feedback_call import server_redis

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SECONDS = 12.0  # the agent's first turn (0.3-5.3 s) and the customer's (6.0-11.0 s)


def short_call(tmp_path: Path) -> Path:
    path = tmp_path / "call-start.wav"
    with wave.open(str(corpus_file("calls/call-1.wav"))) as source, wave.open(str(path), "wb") as out:
        out.setparams(source.getparams())
        out.writeframes(source.readframes(int(SECONDS * source.getframerate())))
    return path


def test_clicking_a_line_s_intents_corrects_them(server, tmp_path):
    with chromium_page(tmp_path) as page:
        sent = []
        page.on("request", lambda request: request.url.endswith("/corrections") and sent.append(request.post_data_json))
        page.goto(server.base_url + "/assist.html")
        page.get_by_test_id("assist-source").select_option("file")
        page.get_by_test_id("assist-file").set_input_files(str(short_call(tmp_path)))
        page.get_by_test_id("assist-start").click()
        # A line with its intents shown: chips to remove, a list to add from (the label set's others).
        line = page.locator("li.final[data-speaker=customer]").first
        line.locator(".as-line-intents select[data-action=add]").wait_for(timeout=40000)
        chips = line.locator("button[data-action=remove]")
        head = [chips.nth(i).get_attribute("data-intent") for i in range(chips.count())]

        add_list = line.locator("select[data-action=add]")
        value = next(v for v in add_list.locator("option").evaluate_all("os => os.map(o => o.value)") if v)

        def labels_shown() -> list[str]:
            return sorted(b.get_attribute("data-intent") for b in line.locator("button[data-action=remove]").all())

        add_list.select_option(value)  # the "+" list adds a label...
        line.locator(f"button[data-action=remove][data-intent={value}]").wait_for(timeout=10000)
        assert labels_shown() == sorted({*head, value})
        line.locator(f"button[data-action=remove][data-intent={value}]").click()  # ...a click on its chip removes it
        line.locator(f"button[data-action=remove][data-intent={value}]").wait_for(state="detached", timeout=10000)
        assert labels_shown() == sorted(head)
        line.locator("select[data-action=add]").select_option(value)
        line.locator(f"button[data-action=remove][data-intent={value}]").wait_for(timeout=10000)
        shown = labels_shown()
        assert len(sent) == 3, sent  # one request per click
        assert sent[1] == {"utterance_id": sent[0]["utterance_id"], "speaker": "customer", "add": [], "remove": [value]}
        session_id = page.evaluate("window.earshotAssist.session")
        utterance_id = sent[0]["utterance_id"]
        assert line.get_attribute("data-corrected") == "1"

        # "Customer wants" shows the customer's last final line: the corrected labels when that is this line.
        link = page.get_by_test_id("assist-summary-link")
        link.wait_for(state="visible", timeout=40000)  # the call has ended: every final is in
        card = page.locator("[data-role=intents-current]")
        last = max(int(u) for u in page.locator("li.final[data-speaker=customer]").evaluate_all(
            "ls => ls.map(l => l.dataset.utteranceId)"))

        def card_labels() -> list[str]:
            return sorted(c.get_attribute("data-intent") for c in card.locator(".as-chip").all())

        if last == utterance_id:
            assert card_labels() == shown and card.get_attribute("data-corrected") == "1"
        else:  # the customer's words came as two finals and this is the first: the card shows the other
            assert card.get_attribute("data-corrected") is None

        # A reconnect's read-back: the line unmarked and its final intent event sent again (the head's labels
        # on the line and the card), then the call's stored corrections read back (GET .../corrections).
        page.evaluate("""(id) => {
            const li = document.querySelector(`li.final[data-speaker=customer][data-utterance-id="${id}"]`);
            delete li.dataset.corrected;
            const intent = window.earshotAssist.events.find((e) => e.type === "intent" && e.final !== false
                && e.speaker === "customer" && e.utterance_id === id);
            window.earshotAssist.handle({...intent});
        }""", utterance_id)
        assert labels_shown() == sorted(head) and line.get_attribute("data-corrected") is None
        assert card_labels() == sorted(head) and card.get_attribute("data-corrected") is None
        assert page.evaluate("() => window.earshotAssist.readCorrections()") == 1
        assert labels_shown() == shown and line.get_attribute("data-corrected") == "1"
        assert card_labels() == shown and card.get_attribute("data-corrected") == "1"
        assert line.locator("select[data-action=add]").count() == 1, "the add list still offers the label set's others"

        # The summary page (the link's, as the calls page opens it) shows the corrected chips on that line.
        page.goto(urljoin(page.url, link.get_attribute("href")))
        page.locator("body[data-state=ready]").wait_for(timeout=20000)
        corrected = page.locator("li.call-line[data-corrected='1']")
        assert corrected.count() == 1 and corrected.get_attribute("data-speaker") == "customer"
        assert sorted(c.get_attribute("data-intent") for c in corrected.locator(".as-chip[data-intent]").all()) == shown
        assert "corrected by the agent" in corrected.inner_text()
        # Its intent counts are after the correction too: the customer's row tallies the labels their lines show.
        lines = page.locator("li.call-line[data-speaker=customer]")
        tally = Counter(c.get_attribute("data-intent") for c in lines.locator(".as-chip[data-intent]").all())
        row = page.locator(".intent-row[data-speaker=customer] .as-chip[data-intent]")
        counts = {c.get_attribute("data-intent"): int(c.inner_text().rsplit("×", 1)[1]) for c in row.all()}
        assert counts == dict(tally) and counts[value] >= 1, (counts, tally)
        assert "after the agent's corrections (1 line)" in page.locator("[data-role=intents-corrected]").inner_text()

    # What the server stored is what the page shows.
    settings = Settings(redis_url=server_redis(server), data_dir=server.log_path.parent)
    stored = [c for c in load_corrections(settings) if c.session_id == session_id]
    assert len(stored) == 1 and list(stored[0].labels) == shown and stored[0].added == (value,)
