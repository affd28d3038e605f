"""The sentence encoder on ONNX Runtime: the installed MiniLM, exported locally, run on one thread.

    SentenceEncoder (torch) --torch.onnx.export, once--> <cache>/<name>-<key>.onnx --ONNX Runtime--> layer means

The graph computes what `layer_means_tensor` computes (each layer's masked
token mean, unit length, side by side), so one pass gives the intent heads'
features and, in its last layer's slice, the sentence embedding topics and
knowledge search use. Nothing is downloaded: the graph is exported from the
weights already installed, into a cache directory (a setting), on the first
start that needs it; the file name carries a hash of the weights and config,
so a changed model never meets a stale graph. The first load checks the graph
against torch on a few probe sentences and refuses one that disagrees; a graph
that passed gets a check file beside it (`<graph>.check.json`: torch's answers
on the probes, the encoder's sizes and its tokenizer settings). Later loads
(`load_checked`) need neither torch nor sentence-transformers: they tokenize
with the model's own tokenizer.json (the `tokenizers` package, the same
tokenizer the transformers one wraps) and check the graph's answers on the
probes against the stored ones. That takes a server start's encoder from
~5.5 s (importing torch and sentence-transformers, and loading the model) to
~0.5 s, and keeps sentence-transformers, transformers and torch out of the
server's memory (dev container, 2 cores; the redactor loads spaCy with torch
hidden, models/redaction/recognizers.py).

Measured on the dev container (2 shared cores under load ~6, one thread,
`python -m bench.intent_bench --intent-only`, test-split utterances, encoder +
head): torch p50 12.4-13.0 ms / p95 17.9-19.5 ms per utterance, ONNX Runtime
p50 5.1-5.6 ms / p95 7.7-8.5 ms.
BERT-family and MPNet encoders (the bundled MiniLM, the intent heads' MPNet)
take this path; RoBERTa and other encoders stay on torch (`encoder_backend` =
torch forces torch for all). A model directory whose marker asks for it
(models/encoder_recipe.py; MPNet's does) gets an int8 graph, checked against
torch by direction rather than to 1e-4 (`disagreement`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from earshot.models.encoder_recipe import EncoderRecipe, calibration_texts, read_recipe, smooth_ffn_outputs

log = logging.getLogger(__name__)

EXPORT_FORMAT = 1  # bump when the exported graph changes, so old cache files are not reused
OPSET = 17
MATCH_TOLERANCE = 1e-4  # largest absolute difference from torch a graph may show (features are unit vectors)
# An int8 graph (weights per channel, activations per call) is further from torch, more so in the upper
# layers: with every product in int8, MPNet's layer means on the probes have a mean cosine of 0.934 with
# torch's (layer 12's, 0.725), against ~0 for a broken graph. Heads trained on torch's features score about
# the same on int8 ones as heads trained on those (call-center out-of-fold micro-F1 0.917 both), so the heads
# are trained on torch and served on the graph (see `export` for what stays in float).
QUANTIZED_MIN_COSINE = 0.85
ONNX_MODEL_TYPES = ("bert", "mpnet")  # encoders exported; others (RoBERTa...) stay on torch
PROBES = (
    "um could you say the question one more time",
    "hi",
    "i want to cancel my internet because it keeps dropping every night and nobody has fixed it yet",
)


class OnnxExportError(RuntimeError):
    """The encoder could not be exported, or the exported graph does not match torch."""


@dataclass(frozen=True)
class GraphInfo:
    """What a checked graph's encoder is, so a load without torch knows it (stored in the check file)."""

    dim: int  # the sentence embedding's size
    layer_features: int  # layers x hidden: the width of the layer means
    embedding_in_layer_means: bool  # the embedding is the last layer's slice of the layer means
    max_length: int  # tokens per sentence, as sentence-transformers truncates
    pad_id: int
    pad_token: str


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "earshot" / "onnx"


def supports_onnx(model: Any) -> bool:
    return str(getattr(model[0].auto_model.config, "model_type", "")) in ONNX_MODEL_TYPES


def _model_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir() if p.suffix in (".json", ".safetensors", ".bin"))


def model_key(model_dir: Path) -> str:
    """A hash of the encoder's config and weights (and the export format): the cache file's name."""
    digest = hashlib.sha256(f"format {EXPORT_FORMAT} opset {OPSET}".encode())
    for path in _model_files(model_dir):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def remembered_model_key(model_dir: Path, cache_dir: Path) -> str:
    """`model_key`, read from cache_dir/keys/ while the model's files are the very same ones.

    Hashing MPNet's 438 MB took 0.23 s on every start (0.84 s cold; dev
    container). The memo is named by each file's path, size, inode and
    modification and change times: any write to a file changes its change
    time, which no tool sets back, so a changed model is hashed again. A memo
    that cannot be read or written (a read-only cache) only costs the hash;
    none is written before the cache directory exists.
    """
    identity = hashlib.sha256(f"format {EXPORT_FORMAT} opset {OPSET}".encode())
    for path in _model_files(model_dir):
        info = path.stat()
        identity.update(f"{path.resolve()}|{info.st_size}|{info.st_ino}|{info.st_mtime_ns}|{info.st_ctime_ns}\n".encode())
    memo = cache_dir / "keys" / identity.hexdigest()[:32]
    with contextlib.suppress(OSError):
        key = memo.read_text().strip()
        if len(key) == 16 and all(c in "0123456789abcdef" for c in key):
            return key
    key = model_key(model_dir)
    if not cache_dir.is_dir():  # nothing exported here yet (or never will be: a RoBERTa stays on torch)
        return key
    partial = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(key + "\n")
        os.replace(partial, memo)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        log.debug("the encoder's key was not remembered in %s: %s", memo, exc)
    return key


def _graph_module(model: Any) -> Any:
    import torch

    class LayerMeans(torch.nn.Module):
        def __init__(self, auto_model: Any) -> None:
            super().__init__()
            self.auto_model = auto_model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.auto_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states[1:]
            mask = attention_mask.unsqueeze(-1).to(hidden[0].dtype)
            means = [torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1), dim=1) for h in hidden]
            return torch.cat(means, dim=1)

    return LayerMeans(model[0].auto_model).eval()


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def export(model: Any, path: Path, recipe: EncoderRecipe = EncoderRecipe()) -> None:
    """Write the layer-means graph of `model` (a SentenceTransformer) to `path`, atomically.

    `recipe.int8`: int8 weights (ONNX Runtime's dynamic quantization, per
    channel) for every matrix product whose node name contains none of
    `recipe.float_matmuls`, after smoothing the feed-forward outputs when the
    recipe asks (models/encoder_recipe.py has the measurements of what MPNet
    is served with now: all int8, smoothed). Before that, measured as call-center
    out-of-fold micro-F1 of heads trained on torch's features, and time per
    utterance on one thread over the 187 call-center test utterances (p50 /
    p95): float 0.931 at 35 / 50 ms; all int8 0.917 at 14 / 18 ms; int8 but
    the feed-forward output products ("/output/dense/", kept now) 0.928 at
    21 / 28 ms; int8 but layers 9-12 0.918 at 20 / 26 ms. Weight-only
    blockwise products (ORT's MatMulNBits, accuracy level 4, all of them) did
    no better: 8-bit block 32 26 / 37 ms, 4-bit block 32 26 / 38 ms, 4-bit
    block 128 21 / 30 ms. MPNet is compute-bound here: ~85 M multiply-adds a
    token, 1.2-1.9 G an utterance (14-22 tokens), and a batch of 8 costs the
    same per utterance as one; p95 10 ms would need about this core's int8 peak.
    """
    import torch

    try:
        import onnx  # noqa: F401 - torch.onnx.export needs it; say so plainly when it is missing
    except ImportError:
        raise OnnxExportError("exporting the encoder needs the onnx package: pip install onnx") from None
    if recipe.int8 and recipe.smooth_ffn_out:
        model = copy.deepcopy(model)  # the caller's model stays as it was (torch's answers are checked against it)
        smooth_ffn_outputs(model, recipe.smooth_ffn_out, calibration_texts())
    batch = model[0].tokenizer(list(PROBES[:2]), padding=True, return_tensors="pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            # The tracer warns about shape checks that are constant for an encoder (is_causal, index ops);
            # the graph is checked against torch on load instead.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _graph_module(model),
                (batch["input_ids"], batch["attention_mask"]),
                str(partial),
                input_names=["input_ids", "attention_mask"],
                output_names=["layer_means"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "layer_means": {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        if recipe.int8:
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            graph = onnx.load(str(partial), load_external_data=False).graph
            kept = [n.name for n in graph.node if n.op_type == "MatMul" and any(p in n.name for p in recipe.float_matmuls)]
            quantized = partial.with_name(partial.name + ".int8")
            with _quiet_root_logger():  # the quantizer logs every tensor it leaves alone at INFO
                quantize_dynamic(
                    str(partial), str(quantized), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=kept
                )
            os.replace(quantized, partial)
        os.replace(partial, path)
    except Exception as exc:  # noqa: BLE001 - any exporter failure means: stay on torch
        partial.unlink(missing_ok=True)
        partial.with_name(partial.name + ".int8").unlink(missing_ok=True)
        raise OnnxExportError(f"cannot export the encoder to ONNX: {type(exc).__name__}: {exc}") from None


class Tokenizer:
    """The encoder's own fast tokenizer (tokenizer.json), padded to the longest and truncated as the encoder is."""

    def __init__(self, model_dir: Path, max_length: int, pad_id: int, pad_token: str) -> None:
        from tokenizers import Tokenizer as FastTokenizer

        file = model_dir / "tokenizer.json"
        try:
            self._tokenizer = FastTokenizer.from_file(str(file))
        except Exception as exc:  # noqa: BLE001 - missing or unreadable: this encoder stays on torch
            raise OnnxExportError(f"cannot read {file}: {type(exc).__name__}: {exc}") from None
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)  # to the longest in the batch

    def __call__(self, sentences: Sequence[str]) -> dict[str, np.ndarray]:
        encoded = self._tokenizer.encode_batch(list(sentences))
        return {
            "input_ids": np.asarray([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encoded], dtype=np.int64),
        }


class OnnxLayerMeans:
    """An ONNX Runtime session over an exported encoder, with the encoder's own tokenizer."""

    def __init__(self, path: Path, tokenizer: Tokenizer, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a corrupt cache file: re-export or stay on torch
            raise OnnxExportError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None
        self._tokenizer = tokenizer
        self.path = path

    def __call__(self, sentences: Sequence[str]) -> np.ndarray:
        return np.asarray(self._session.run(None, self._tokenizer(sentences))[0], dtype=np.float32)


def disagreement(graph: Path, answers: np.ndarray, reference: np.ndarray) -> Optional[str]:
    """Why the graph's answers on the probes are not torch's (None when they agree).

    A float graph must match to MATCH_TOLERANCE; an int8 graph's layer means must point the same way
    (mean cosine over probes and layers >= QUANTIZED_MIN_COSINE)."""
    if not graph.name.endswith("-int8.onnx"):
        difference = float(np.max(np.abs(answers - reference)))
        return None if difference <= MATCH_TOLERANCE else f"differs from torch by {difference:.2e} (> {MATCH_TOLERANCE:.0e})"
    # Each layer's slice is unit length, so a row's cosine is the mean of its layers' cosines.
    norms = np.linalg.norm(answers, axis=1) * np.linalg.norm(reference, axis=1)
    mean = float(((answers * reference).sum(1) / np.maximum(norms, 1e-12)).mean())
    return None if mean >= QUANTIZED_MIN_COSINE else f"int8 layer means agree with torch's at cosine {mean:.3f} (< {QUANTIZED_MIN_COSINE})"


def graph_path(model_dir: Path, cache_dir: Path) -> Path:
    suffix = "-int8" if read_recipe(model_dir).int8 else ""
    return cache_dir / f"{model_dir.name}-{remembered_model_key(model_dir, cache_dir)}{suffix}.onnx"


def check_path(graph: Path) -> Path:
    return graph.with_name(graph.name + ".check.json")


def graph_info(model: Any, dim: int, embedding_in_layer_means: bool) -> GraphInfo:
    """`model` (a SentenceTransformer)'s sizes and tokenizer settings."""
    transformer = model[0]
    config = transformer.auto_model.config
    tokenizer = transformer.tokenizer
    return GraphInfo(
        dim=dim,
        layer_features=int(config.num_hidden_layers * config.hidden_size),
        embedding_in_layer_means=embedding_in_layer_means,
        max_length=int(transformer.max_seq_length),
        pad_id=int(tokenizer.pad_token_id),
        pad_token=str(tokenizer.pad_token),
    )


def load_onnx(
    model: Any, model_dir: Path, cache_dir: Path, threads: int, torch_features: Any, info: GraphInfo
) -> OnnxLayerMeans:
    """The cached graph of this encoder (exported first if absent), checked against torch; its check file written.

    Raises OnnxExportError when the encoder cannot be exported or its graph
    disagrees with torch; the caller then stays on torch.
    """
    path = graph_path(model_dir, cache_dir)
    if not path.is_file():
        log.info("exporting the sentence encoder to %s (once per model)", path)
        export(model, path, read_recipe(model_dir))
    tokenizer = Tokenizer(model_dir, info.max_length, info.pad_id, info.pad_token)
    try:
        session = OnnxLayerMeans(path, tokenizer, threads)
    except OnnxExportError:
        log.warning("the cached graph %s does not load; exporting it again", path)
        export(model, path, read_recipe(model_dir))
        session = OnnxLayerMeans(path, tokenizer, threads)
    reference = np.asarray(torch_features(list(PROBES)), dtype=np.float32)
    problem = disagreement(path, session(PROBES), reference)
    if problem:
        raise OnnxExportError(f"{path} {problem}")
    _write_check(path, info, reference)
    return session


def load_checked(model_dir: Path, cache_dir: Path, threads: int) -> Optional[tuple[OnnxLayerMeans, GraphInfo]]:
    """The cached graph of this encoder and what it is, without torch: None unless it was checked before
    and still gives torch's answers on the probes (then the caller loads torch and checks it again)."""
    path = graph_path(model_dir, cache_dir)
    check = check_path(path)
    if not (path.is_file() and check.is_file()):
        return None
    try:
        stored = json.loads(check.read_text())
        info = GraphInfo(**stored["info"])
        reference = np.asarray(stored["reference"], dtype=np.float32)
        session = OnnxLayerMeans(path, Tokenizer(model_dir, info.max_length, info.pad_id, info.pad_token), threads)
        problem = disagreement(path, session(PROBES), reference)
    except (OSError, ValueError, TypeError, KeyError, OnnxExportError) as exc:
        log.warning("the check file %s is not usable (torch checks the graph again): %s", check, exc)
        return None
    if stored.get("probes") != list(PROBES) or problem:
        log.warning("%s no longer matches its check file (torch checks it again)", path)
        return None
    return session, info


def _write_check(path: Path, info: GraphInfo, reference: np.ndarray) -> None:
    check = check_path(path)
    partial = check.with_name(f".{check.name}.{os.getpid()}.tmp")
    document = {"probes": list(PROBES), "info": asdict(info), "reference": [[float(x) for x in row] for row in reference]}
    try:
        partial.write_text(json.dumps(document))
        os.replace(partial, check)
    except OSError as exc:  # a read-only cache: every start checks against torch, as before
        partial.unlink(missing_ok=True)
        log.warning("the check file %s was not written: %s", check, exc)
