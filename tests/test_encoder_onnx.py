"""The sentence encoder on ONNX Runtime: exported locally from the installed MiniLM, equal to torch.

Runs the real bundled encoder; the export takes a few seconds once per module
(the graph is cached in a temporary directory, as the server caches it under
`encoder_onnx_cache`).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from earshot.models import encoder_onnx
from earshot.models.encoder import SentenceEncoder, bundled_encoder_path

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


def test_a_corrupt_cached_graph_is_exported_again(tmp_path, onnx_encoder, cache_dir):
    (graph,) = cache_dir.glob("*.onnx")
    broken = tmp_path / "cache"
    broken.mkdir()
    (broken / graph.name).write_bytes(b"not an onnx graph")
    encoder = SentenceEncoder.load("", threads=1, backend="onnx", onnx_cache=str(broken))
    assert encoder.backend == "onnx"
    assert (broken / graph.name).stat().st_size > 1_000_000


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
