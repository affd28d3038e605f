"""The sentence encoder on ONNX Runtime: exported locally from the installed MiniLM, equal to torch.

Runs the real bundled encoder; the export takes a few seconds once per module
(the graph is cached in a temporary directory, as the server caches it under
`encoder_onnx_cache`).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from earshot.models import encoder_onnx
from earshot.models.encoder import SentenceEncoder, bundled_encoder_path
from tests.conftest import fresh_process_json

TEXTS = [
    "um could you say the question one more time i lost it halfway",
    "hi",
    "Why was I charged twice this month?",
    "i want to cancel my internet because it keeps dropping every night and nobody has fixed it yet so yeah",
    "so what i mean by ownership is like when something breaks at two am i'm the one who picks it up",
]
TOLERANCE = 1e-4  # features and embeddings are unit vectors; float32 reordering moves them ~1e-6


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_encoder():
    return SentenceEncoder.load("", threads=1)


@pytest.fixture(scope="module")
def onnx_encoder(cache_dir):
    return SentenceEncoder.load("", threads=1, backend="onnx", onnx_cache=str(cache_dir))


def test_the_bundled_minilm_runs_on_onnx_from_a_local_export(onnx_encoder, cache_dir):
    assert onnx_encoder.backend == "onnx"
    files = list(cache_dir.glob("*.onnx"))
    assert len(files) == 1 and files[0].name.startswith(bundled_encoder_path().name + "-")
    assert not list(cache_dir.glob(".*.tmp"))  # the export was written atomically


def test_onnx_layer_means_and_embeddings_match_torch(onnx_encoder, torch_encoder):
    one_by_one = np.concatenate([onnx_encoder.layer_means([t]) for t in TEXTS])
    batched = onnx_encoder.layer_means(TEXTS)  # padded to the longest: the mask keeps the means the same
    expected = torch_encoder.layer_means(TEXTS)
    assert one_by_one.shape == expected.shape == (len(TEXTS), 6 * 384)
    assert np.abs(one_by_one - expected).max() < TOLERANCE
    assert np.abs(batched - expected).max() < TOLERANCE
    assert np.abs(onnx_encoder.encode(TEXTS) - torch_encoder.encode(TEXTS)).max() < TOLERANCE
    assert onnx_encoder.encode([]).shape == (0, 384) and onnx_encoder.layer_means([]).shape == (0, 6 * 384)


def test_the_embedding_is_the_last_layer_slice_of_the_layer_means(torch_encoder):
    assert torch_encoder.embedding_in_layer_means
    embedded = torch_encoder.embedding_of(torch_encoder.layer_means(TEXTS))
    assert np.abs(embedded - torch_encoder.encode(TEXTS)).max() < TOLERANCE


def test_a_second_load_reuses_the_cached_graph(onnx_encoder, cache_dir):
    (graph,) = cache_dir.glob("*.onnx")
    stamp = graph.stat().st_mtime_ns
    again = SentenceEncoder.load("", threads=1, backend="onnx", onnx_cache=str(cache_dir))
    assert again.backend == "onnx" and graph.stat().st_mtime_ns == stamp


def test_the_model_s_hash_is_remembered_until_a_file_of_it_changes(tmp_path, monkeypatch):
    """A start reads the encoder's key from the cache instead of hashing its weights; a changed file is hashed."""
    model_dir = tmp_path / "model"
    shutil.copytree(bundled_encoder_path(), model_dir)
    cache = tmp_path / "cache"
    cache.mkdir()  # as a first export leaves it
    hashed = []
    real_key = encoder_onnx.model_key
    monkeypatch.setattr(encoder_onnx, "model_key", lambda path: hashed.append(path) or real_key(path))
    first = encoder_onnx.remembered_model_key(model_dir, cache)
    assert first == real_key(model_dir) and len(hashed) == 1
    assert encoder_onnx.remembered_model_key(model_dir, cache) == first and len(hashed) == 1  # read back, not hashed
    config = model_dir / "config.json"
    config.write_text(config.read_text() + " ")  # same name, one byte more: another model as far as the key goes
    changed = encoder_onnx.remembered_model_key(model_dir, cache)
    assert len(hashed) == 2 and changed != first and changed == real_key(model_dir)
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "keys").write_text("not a directory")  # a memo that cannot be kept costs the hash, nothing else
    assert encoder_onnx.remembered_model_key(model_dir, blocked) == changed and len(hashed) == 3


def test_a_corrupt_cached_graph_is_exported_again(tmp_path, onnx_encoder, cache_dir):
    (graph,) = cache_dir.glob("*.onnx")
    broken = tmp_path / "cache"
    broken.mkdir()
    (broken / graph.name).write_bytes(b"not an onnx graph")
    shutil.copy(encoder_onnx.check_path(graph), broken)  # its check file says nothing of a graph that does not load
    encoder = SentenceEncoder.load("", threads=1, backend="onnx", onnx_cache=str(broken))
    assert encoder.backend == "onnx"
    assert (broken / graph.name).stat().st_size > 1_000_000


def test_a_checked_graph_loads_without_torch_and_still_equals_it(onnx_encoder, torch_encoder, cache_dir):
    """What a server's start does once the graph passed its check: no torch, no sentence-transformers."""
    script = (
        "import json, sys\n"
        "from earshot.models.encoder import SentenceEncoder\n"
        f"encoder = SentenceEncoder.load('', threads=1, backend='onnx', onnx_cache={str(cache_dir)!r})\n"
        f"means = encoder.layer_means({TEXTS!r}).tolist()\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)\n"
        "print(json.dumps({'backend': encoder.backend, 'heavy': heavy, 'means': means, 'dim': encoder.dim,"
        " 'in_means': encoder.embedding_in_layer_means}))\n"
    )
    answer = fresh_process_json(script, timeout_s=120)
    assert answer["backend"] == "onnx" and answer["heavy"] == [], answer["heavy"]
    assert answer["dim"] == 384 and answer["in_means"]
    assert np.abs(np.asarray(answer["means"]) - torch_encoder.layer_means(TEXTS)).max() < TOLERANCE


def test_a_check_file_the_graph_no_longer_matches_sends_the_load_back_to_torch(tmp_path, onnx_encoder, cache_dir):
    (graph,) = cache_dir.glob("*.onnx")
    copy = tmp_path / "cache"
    copy.mkdir()
    shutil.copy(graph, copy)
    check = encoder_onnx.check_path(copy / graph.name)
    stored = json.loads(encoder_onnx.check_path(graph).read_text())
    check.write_text(json.dumps({**stored, "reference": [[x + 0.1 for x in row] for row in stored["reference"]]}))
    assert encoder_onnx.load_checked(bundled_encoder_path(), copy, 1) is None
    encoder = SentenceEncoder.load("", threads=1, backend="onnx", onnx_cache=str(copy))
    assert encoder.backend == "onnx"
    assert json.loads(check.read_text())["reference"] == stored["reference"], "torch checked it and wrote the truth"
    assert encoder_onnx.load_checked(bundled_encoder_path(), copy, 1) is not None


def test_the_graph_s_tokenizer_cuts_every_utterance_of_the_data_as_the_encoder_s_own(torch_encoder):
    """The check runs on three probes; the tokenizer must also agree on everything the heads learn from."""
    from earshot.models.intent_dataset import DATA_DIR

    texts = [json.loads(line)["text"] for name in ("interview", "call_center")
             for line in (DATA_DIR / f"{name}.jsonl").read_text().splitlines() if line.strip()]
    texts += ["word " * 400, "", "Ünïcödé café, naïve", "TABS\tand  spaces\n", "12,345.67 $ € 😀"]
    transformer = torch_encoder.module[0]
    info = encoder_onnx.graph_info(torch_encoder.module, torch_encoder.dim, True)
    ours = encoder_onnx.Tokenizer(bundled_encoder_path(), info.max_length, info.pad_id, info.pad_token)
    for start in range(0, len(texts), 32):
        batch = texts[start : start + 32]
        theirs = transformer.tokenizer(batch, padding=True, truncation=True, max_length=transformer.max_seq_length,
                                       return_tensors="np")
        mine = ours(batch)
        for name in ("input_ids", "attention_mask"):
            assert np.array_equal(mine[name], theirs[name]), (name, batch)
    assert len(texts) > 2000


def test_a_graph_that_disagrees_with_torch_is_refused_and_torch_stays(tmp_path, torch_encoder, monkeypatch):
    monkeypatch.setattr(encoder_onnx, "MATCH_TOLERANCE", -1.0)  # nothing can match: as if the export were wrong
    encoder = SentenceEncoder.load("", threads=1, backend="onnx", onnx_cache=str(tmp_path))
    assert encoder.backend == "torch"
    assert np.abs(encoder.layer_means(TEXTS[:2]) - torch_encoder.layer_means(TEXTS[:2])).max() < TOLERANCE


def test_the_torch_backend_writes_nothing(tmp_path):
    encoder = SentenceEncoder.load("", threads=1, backend="torch", onnx_cache=str(tmp_path))
    assert encoder.backend == "torch" and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown encoder backend 'tensorrt'"):
        SentenceEncoder.load("", backend="tensorrt")


def test_a_roberta_encoder_stays_on_torch(tmp_path):
    """RoBERTa-family encoders keep the torch path (a tiny random one, built here, stands in)."""
    from transformers import RobertaConfig, RobertaModel

    model_dir = tmp_path / "tiny-roberta"
    config = RobertaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=300, pad_token_id=0)
    RobertaModel(config).save_pretrained(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(bundled_encoder_path() / name, model_dir / name)
    encoder = SentenceEncoder.load(str(model_dir), threads=1, backend="onnx", onnx_cache=str(tmp_path / "cache"))
    assert encoder.backend == "torch"
    assert encoder.layer_means(["hello there"]).shape == (1, 2 * 32)
    assert not (tmp_path / "cache").exists()


def test_an_int8_graph_must_point_where_torch_does(torch_encoder, tmp_path):
    reference = torch_encoder.layer_means(TEXTS[:3])
    float_graph, int8_graph = tmp_path / "m-1.onnx", tmp_path / "m-1-int8.onnx"
    assert encoder_onnx.disagreement(float_graph, reference + 5e-5, reference) is None
    assert "differs from torch" in encoder_onnx.disagreement(float_graph, reference + 1e-3, reference)
    noisy = reference + np.random.default_rng(1).normal(0, 0.01, reference.shape).astype(np.float32)
    assert encoder_onnx.disagreement(int8_graph, noisy, reference) is None  # int8's drift: close in direction
    broken = np.random.default_rng(2).normal(0, 1, reference.shape).astype(np.float32)
    assert "cosine" in encoder_onnx.disagreement(int8_graph, broken, reference)


def test_the_intent_encoder_runs_int8_on_onnx_close_to_torch(tmp_path):
    """MPNet, joined from its packages: its graph is all int8, the feed-forward outputs smoothed, and agrees with torch.

    Unsmoothed, the same all-int8 graph gives these texts a mean per-layer cosine of 0.931 (lowest 0.68)."""
    onnx_mpnet = SentenceEncoder.load("mpnet", threads=1, backend="onnx")  # make prepared it in the default cache
    assert onnx_mpnet.backend == "onnx" and onnx_mpnet._onnx.path.name.endswith("-int8.onnx")
    torch_mpnet = SentenceEncoder.load("mpnet", threads=1)
    ours, theirs = onnx_mpnet.layer_means(TEXTS), torch_mpnet.layer_means(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), 12 * 768)
    per_layer = (ours.reshape(len(TEXTS), 12, 768) * theirs.reshape(len(TEXTS), 12, 768)).sum(-1)
    assert per_layer.mean() > 0.97 and per_layer.min() > 0.9, per_layer.round(3)  # smoothed: 0.986 and 0.952
