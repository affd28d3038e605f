"""The encoder's marker recipe: how a graph is quantized, and SmoothQuant leaving the float encoder as it was.

Runs the real bundled MiniLM (its feed-forward outputs smoothed in place);
MPNet's smoothed int8 graph against torch is in test_encoder_onnx.py.
"""

from __future__ import annotations

import json

import numpy as np

from earshot.models.encoder import SentenceEncoder
from earshot.models.encoder_recipe import EncoderRecipe, calibration_texts, read_recipe, smooth_ffn_outputs
from earshot.models.intent_dataset import load_dataset
from earshot.models.model_files import ENCODER_MARKER, MPNET_MARKER

TEXTS = ["um could you say that again", "why was i charged twice this month", "hi"]


def test_a_marker_reads_as_a_recipe_and_a_missing_or_broken_one_as_the_plain_encoder(tmp_path):
    assert read_recipe(tmp_path) == EncoderRecipe()
    (tmp_path / ENCODER_MARKER).write_text(json.dumps(MPNET_MARKER))
    assert read_recipe(tmp_path) == EncoderRecipe(int8=True, float_matmuls=(), smooth_ffn_out=0.75)
    (tmp_path / ENCODER_MARKER).write_text('{"onnx_weights": "int8", "float_matmuls": ["/output/dense/"]}')
    assert read_recipe(tmp_path) == EncoderRecipe(int8=True, float_matmuls=("/output/dense/",))
    for broken in ("[1, 2]", "{not json"):
        (tmp_path / ENCODER_MARKER).write_text(broken)
        assert read_recipe(tmp_path) == EncoderRecipe()


def test_smoothing_changes_the_products_but_not_what_the_float_encoder_computes():
    encoder = SentenceEncoder.load("", threads=1)
    before = encoder.layer_means(TEXTS)
    layers = encoder.module[0].auto_model.encoder.layer
    weights = [layer.output.dense.weight.detach().clone() for layer in layers]
    smooth_ffn_outputs(encoder.module, 0.75, calibration_texts()[:200])
    after = encoder.layer_means(TEXTS)
    assert np.abs(after - before).max() < 1e-4
    for layer, weight in zip(layers, weights):
        smoothed = layer.output.dense
        scale = 1.0 / smoothed.inverse
        assert smoothed.dense.weight.shape == weight.shape and not np.allclose(smoothed.dense.weight.detach().numpy(), weight.numpy())
        assert np.allclose(smoothed.dense.weight.detach().numpy(), (weight * scale[None, :]).numpy(), rtol=1e-5, atol=1e-7)


def test_the_graph_is_calibrated_on_training_utterances_only():
    texts = set(calibration_texts())
    for label_set in ("interview", "call_center"):
        data = load_dataset(label_set)
        assert {u.text for u in data.split("train")} <= texts
        assert not texts & {u.text for u in data.split("test")} - {u.text for u in data.split("train")}
