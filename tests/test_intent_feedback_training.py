"""`earshot train-intent --with-feedback`: agents' corrections join the training data, never the test split.

Real data set, real encoder; the training runs use a small copy of the data
set and few epochs, so they take seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Optional

import pytest

from earshot.models.intent_dataset import load_dataset
from earshot.models.intent_feedback import Correction, CorrectionError, write_jsonl
from earshot.models.intent_feedback_data import merge_feedback, text_key
from earshot.models.intent_training import TrainConfig, train_intent
from earshot.server.at_rest import Sealer
from earshot.server.feedback_store import FeedbackStore
from earshot.server.retention import Retention
from earshot.server.settings import Settings
from earshot.server.store import SessionStore, connect
from tests.conftest import REPO
from tests.test_intent import small_data_dir


def correction(text: str, labels: tuple[str, ...], at: float, label_set: str = "call_center", utterance: int = 1) -> Correction:
    return Correction(label_set, text, tuple(sorted(labels)), labels, (), "s-1", utterance, "agent-7", at)


@pytest.fixture(scope="module")
def data():
    return load_dataset("call_center")


def test_the_latest_correction_of_a_text_wins_and_other_label_sets_are_left_out(data):
    corrections = [
        correction("My modem keeps rebooting, every hour!", ("complaint",), at=10.0),
        correction("my modem keeps rebooting every hour", ("technical_problem",), at=20.0),  # same words, later
        correction("could you repeat the question", ("asks_to_repeat",), at=30.0, label_set="interview"),
    ]
    merged = merge_feedback(data, corrections, weight=3.0, share=0.0)
    added = [u for u in merged.train if u.id.startswith("feedback-")]
    assert [(u.text, u.labels) for u in added] == [("my modem keeps rebooting every hour", ("technical_problem",))]
    assert merged.weights[added[0].id] == 3.0
    assert merged.counts["this_label_set"] == 2 and merged.counts["after_dedup"] == 1


def test_a_correction_of_a_training_text_replaces_its_labels(data):
    example = data.split("train")[0]
    new_labels = ("escalation",) if "escalation" not in example.labels else ("greeting_other",)
    merged = merge_feedback(data, [correction(example.text.upper(), new_labels, at=1.0)], share=0.0)
    relabelled = [u for u in merged.train if text_key(u.text) == text_key(example.text)]
    assert relabelled and all(u.labels == new_labels for u in relabelled)
    assert not [u for u in merged.train if u.id.startswith("feedback-")]  # replaced, not added twice
    assert merged.counts["relabelled_examples"] == len(relabelled)
    assert all(merged.weights[u.id] == 2.0 for u in relabelled)


def test_corrections_never_reach_the_test_split_and_some_are_held_out(data):
    test_example = data.split("test")[0]
    fresh = [correction(f"i need help with order number {n} it has not moved", ("order_status",), at=float(n), utterance=n)
             for n in range(40)]
    merged = merge_feedback(data, [correction(test_example.text, ("complaint",), at=99.0)] + fresh)
    trained = {text_key(u.text) for u in merged.train + merged.validation}
    assert text_key(test_example.text) not in {text_key(u.text) for u in merged.train if u.id.startswith("feedback-")}
    assert text_key(test_example.text) in {text_key(u.text) for u in merged.held_out}
    assert merged.counts["in_test_split"] == 1
    assert 1 <= len(merged.held_out) - 1 <= 20  # about a fifth of the 40, chosen by a hash of the text
    assert not {text_key(u.text) for u in merged.held_out} & {text_key(u.text) for u in merged.train if u.id.startswith("feedback-")}
    assert trained  # the data set itself is still there
    assert [u for u in load_dataset("call_center").split("test")] == data.split("test")


def test_an_unknown_label_names_the_correction(data):
    with pytest.raises(CorrectionError, match=r"session 's-1' utterance 4 .*unknown call_center label\(s\) 'refund_request'"):
        merge_feedback(data, [correction("i want my money back", ("refund_request",), at=1.0, utterance=4)])


def test_training_with_feedback_reports_before_and_after(tmp_path):
    data_dir = small_data_dir(tmp_path, per_split=30)
    corrections = tuple(
        correction(text, labels, at=float(i), utterance=i)
        for i, (text, labels) in enumerate([
            ("the app logs me out every time i open the bill page", ("technical_problem",)),
            ("you guys are honestly the best i've had", ("feedback_praise",)),
            ("put me through to a manager please", ("escalation",)),
            ("why did my payment go out twice", ("billing_inquiry",)),
            ("i'd like to close my account today", ("cancellation",)),
            ("okay thanks bye", ("greeting_other",)),
        ] * 1)
    )
    result = train_intent(TrainConfig("call_center", epochs=60, data_dir=data_dir, out_dir=tmp_path / "heads",
                                      feedback=corrections, feedback_weight=2.5))
    feedback = result.evaluation["feedback"]
    assert feedback["weight"] == 2.5 and feedback["counts"]["this_label_set"] == 6
    assert set(feedback["test_micro_f1"]) == {"before", "after"}
    held = feedback["corrections_held_out_micro_f1"]
    assert held["examples"] == feedback["counts"]["held_out"]
    assert result.evaluation["test"]["examples"] == 30  # the test split is the data set's, unchanged
    assert result.evaluation["test"]["micro_f1"] == feedback["test_micro_f1"]["after"]
    written = json.loads((tmp_path / "heads" / "call_center.eval.json").read_text())
    assert written["feedback"] == feedback and written["training"]["feedback"]["added"] == feedback["counts"]["added"]


def run_cli(*args: str, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "earshot.server", "train-intent", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_with_feedback_reads_the_corrections_the_servers_stored(own_redis, tmp_path):
    settings = Settings(redis_url=own_redis.url, data_dir=tmp_path / "server")

    async def store_one() -> None:
        client = connect(own_redis.url)
        sealer = Sealer.from_settings(settings)  # the key file a server makes under its data dir
        sessions = SessionStore(client, Retention.from_settings(settings), sealer)
        record, _ = await sessions.create("assist", "", "medium")
        assert await sessions.append_final(record.session_id, 1, {"type": "final", "text": "x"}, {"audio_s": 1.0})
        stored = Correction("call_center", "the app crashes when i pay", ("technical_problem",), ("technical_problem",),
                            (), record.session_id, 1, "agent-7", 1.0)
        assert await FeedbackStore(client, sessions.retention, sealer).write(stored, "customer", expected="")
        await client.aclose()

    asyncio.run(store_one())
    data_dir = small_data_dir(tmp_path, per_split=20)
    out = tmp_path / "out"
    done = run_cli("--label-set", "call_center", "--data-dir", str(data_dir), "--out", str(out), "--epochs", "20",
                   "--with-feedback", env={"EARSHOT_REDIS_URL": own_redis.url, "EARSHOT_DATA_DIR": str(settings.data_dir)})
    assert done.returncode == 0, done.stderr
    assert "corrections: 1 of this label set" in done.stdout
    assert json.loads((out / "call_center.eval.json").read_text())["feedback"]["counts"]["corrections"] == 1


def test_the_cli_refuses_a_bad_corrections_file_with_its_line(tmp_path):
    data_dir = small_data_dir(tmp_path, per_split=20)
    good = correction("my bill doubled", ("billing_inquiry",), at=1.0)
    path = tmp_path / "corrections.jsonl"
    path.write_text(json.dumps(good.to_dict()) + "\n" + '{"label_set": "call_center", "text": "x"}\n')
    common = ["--label-set", "call_center", "--data-dir", str(data_dir), "--out", str(tmp_path / "out"), "--epochs", "20"]
    broken = run_cli(*common, "--feedback-file", str(path))
    assert broken.returncode == 2, broken.stderr
    assert f"{path}:2" in broken.stderr and "Traceback" not in broken.stderr

    write_jsonl(path, [good, correction("refund me now", ("refund_request",), at=2.0, utterance=9)])
    unknown = run_cli(*common, "--with-feedback", "--feedback-file", str(path))
    assert unknown.returncode == 2
    assert "refund_request" in unknown.stderr and str(path) in unknown.stderr and "Traceback" not in unknown.stderr

    # Without a file, the servers' store: here a Redis nobody runs.
    nowhere = run_cli(*common, "--with-feedback", env={"EARSHOT_REDIS_URL": "redis://127.0.0.1:1", "EARSHOT_DATA_DIR": str(tmp_path)})
    assert nowhere.returncode == 2 and "cannot read the corrections" in nowhere.stderr and "Traceback" not in nowhere.stderr
    missing = run_cli(*common, "--feedback-file", str(tmp_path / "absent.jsonl"))
    assert missing.returncode == 2 and "absent.jsonl" in missing.stderr and "Traceback" not in missing.stderr

    write_jsonl(path, [good, correction("the app crashes when i pay", ("technical_problem",), at=3.0, utterance=2)])
    ok = run_cli(*common, "--with-feedback", "--feedback-file", str(path), "--feedback-weight", "3")
    assert ok.returncode == 0, ok.stderr
    assert "corrections: 2 of this label set" in ok.stdout
    assert json.loads((tmp_path / "out" / "call_center.eval.json").read_text())["feedback"]["weight"] == 3.0
