"""How a model directory's marker asks for its sentence encoder's ONNX graph to be quantized.

The marker (model_files.ENCODER_MARKER, JSON) sits in directories this
project assembles (MPNet's); a directory without one gets a float graph:

    {"onnx_weights": "int8", "float_matmuls": [], "smooth_ffn_out": 0.75}

- `onnx_weights` "int8": ONNX Runtime's dynamic quantization for every
  matrix product whose node name contains none of `float_matmuls`.
- `smooth_ffn_out` alpha: SmoothQuant (Xiao et al., 2022) on the
  feed-forward output products before they are quantized. Their input, the
  GELU of 3072 channels, has a few channels far larger than the rest (up to
  100 against a median of 2.3 in MPNet's layers 7-11 on the intent data), and
  a per-call int8 scale set by those leaves the rest a few levels. Each input
  channel j is divided by s_j = max|x_j|^alpha / max|W_j|^(1-alpha) and the
  weights' column j multiplied by it: the same product in float, and one
  whose activations and weights both quantize well. max|x_j| is measured on
  the intent data's training utterances (the test split never).

Measured on MPNet (dev container, one thread; out-of-fold micro-F1 of heads
on each graph's own features, mean of 3 fold assignments, call center /
interview; encoder time per utterance p50 / p95 on the call-center test
utterances, interview ones in brackets where taken):

| graph | micro-F1 | ms |
|---|---|---|
| 12 layers, torch's float features (the float graph: 35 / 50 ms, measured earlier) | 0.929 / 0.909 | |
| 12 layers, int8 but the feed-forward outputs (served until now) | 0.926 / 0.907 | 15 / 18 |
| 12 layers, all int8 | 0.920 / 0.914 | 8.3 / 10.4 |
| 12 layers, all int8, smoothed at 0.5 | 0.918 / 0.917 | 8.5 / 10.6 |
| 12 layers, all int8, smoothed at 0.75 (served now) | 0.925 / 0.908 | 8.9 / 10.8 (8.8 / 12.2) |
| the first 11 layers, all int8, smoothed at 0.75 | 0.921 / 0.909 | 8.3 / 10.1 (8.3 / 11.4) |
| the first 10 layers, all int8, smoothed at 0.75 | 0.921 / 0.910 | 7.3 / 9.0 (7.4 / 10.1) |

Smoothed at 0.75, the int8 layer means have a cosine of 0.990 with torch's
(all int8 unsmoothed: 0.948). The 10-layer encoder was tried through to the
test split, once: heads on it scored call center 0.889 (0.884 as served),
interview 0.915 (0.921), below the 12-layer heads and, for call center, no
better than MiniLM's at about the same speed; it was left out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 64


@dataclass(frozen=True)
class EncoderRecipe:
    int8: bool = False  # the ONNX graph's products in int8
    float_matmuls: tuple[str, ...] = ()  # node-name parts of products kept in float
    smooth_ffn_out: float = 0.0  # SmoothQuant alpha on the feed-forward output products; 0 = none


def read_recipe(model_dir: Path) -> EncoderRecipe:
    """The directory's marker as a recipe; no marker (or an unreadable one) is the plain encoder."""
    from earshot.models.model_files import ENCODER_MARKER

    try:
        marker = json.loads((model_dir / ENCODER_MARKER).read_text())
    except (OSError, ValueError):
        return EncoderRecipe()
    if not isinstance(marker, dict):
        return EncoderRecipe()
    return EncoderRecipe(
        int8=marker.get("onnx_weights") == "int8",
        float_matmuls=tuple(str(part) for part in marker.get("float_matmuls", ())),
        smooth_ffn_out=float(marker.get("smooth_ffn_out", 0.0) or 0.0),
    )


def smooth_ffn_outputs(model: Any, alpha: float, texts: Sequence[str]) -> None:
    """SmoothQuant the feed-forward output product of every layer, in place, calibrated on `texts`.

    The model computes the same in float afterwards (to float32 rounding); only
    its quantized graph changes.
    """
    import torch

    from earshot.models.encoder import layer_means_tensor

    layers = model[0].auto_model.encoder.layer
    peaks: list[Any] = [None] * len(layers)

    def record(index: int) -> Any:
        def hook(_module: Any, inputs: Any) -> None:
            peak = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            peaks[index] = peak if peaks[index] is None else torch.maximum(peaks[index], peak)

        return hook

    hooks = [layer.output.dense.register_forward_pre_hook(record(i)) for i, layer in enumerate(layers)]
    try:
        ordered = sorted(set(texts), key=lambda t: (len(t), t))
        with torch.inference_mode():
            for start in range(0, len(ordered), CALIBRATION_BATCH):
                layer_means_tensor(model, ordered[start : start + CALIBRATION_BATCH])
    finally:
        for hook in hooks:
            hook.remove()
    for layer, peak in zip(layers, peaks):
        dense = layer.output.dense
        weight_peak = dense.weight.detach().abs().amax(0).clamp(min=1e-5)
        scale = peak.clamp(min=1e-5) ** alpha / weight_peak ** (1 - alpha)
        layer.output.dense = _smoothed(dense, scale)
    log.info("smoothed %d feed-forward output products (alpha %.2f) on %d utterances", len(layers), alpha, len(ordered))


def calibration_texts() -> list[str]:
    """The intent data's training utterances, both label sets: what the encoder's graph is tuned on."""
    from earshot.models.intent import LABEL_SETS
    from earshot.models.intent_dataset import load_dataset

    return [u.text for name in LABEL_SETS for u in load_dataset(name).split("train")]


def _smoothed(dense: Any, scale: Any) -> Any:
    """x -> dense(x / scale), with the weights' columns times scale: the same product, a smoother input."""
    import torch

    class Smoothed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("inverse", (1.0 / scale).to(torch.float32))
            self.dense = torch.nn.Linear(dense.in_features, dense.out_features)
            with torch.no_grad():
                self.dense.weight.copy_(dense.weight * scale[None, :])
                self.dense.bias.copy_(dense.bias)

        def forward(self, x: Any) -> Any:
            return self.dense(x * self.inverse)

    return Smoothed()
