"""What the benchmarks write down: their settings with secrets masked, and how their WER was scored."""

import json

from bench.common import write_results
from bench.run_bench import recorded_config
from earshot.server.settings import Secret
from earshot.server.settings_sources import settings_from_env
from tests.conftest import CORPUS

API_KEY = "sk-bench-test-7f3c9a1e5d"


def test_recorded_settings_never_hold_the_api_key(tmp_path):
    env = {"EARSHOT_LLM_BACKEND": "http", "EARSHOT_LLM_URL": "http://127.0.0.1:8001/v1", "EARSHOT_LLM_API_KEY": API_KEY}
    settings = settings_from_env(env)
    assert settings.llm_api_key.reveal() == API_KEY
    config = recorded_config(settings, quick=True, corpus_root=CORPUS, speech=[], nonspeech=[])
    text = write_results(tmp_path, "asr-test", config).read_text()
    assert API_KEY not in text
    recorded = json.loads(text)
    assert recorded["settings"]["llm_api_key"] == Secret.MASK
    assert recorded["settings"]["asr_model"] == settings.asr_model  # the rest is there as it ran


def test_results_say_how_wer_was_scored(tmp_path):
    config = recorded_config(settings_from_env({}), quick=True, corpus_root=CORPUS, speech=[], nonspeech=[])
    method = config["wer_method"]
    assert method["normalizer"] == "whisper_normalizer.english.EnglishTextNormalizer"
    assert method["wer_tool"].startswith("jiwer ")
