"""The process's sentence encoder, and the one thread it runs on.

Assist topics, knowledge search and interview reports embed text with
MiniLM; intent classification (every final of every call) uses the encoder
its heads were trained on (below). One copy of each is loaded. The live work (intents, topics, knowledge) runs
on one dedicated thread: encodes are short (~4-6 ms for an utterance on
ONNX Runtime, see models/encoder_onnx.py), and one thread keeps them from
competing with Whisper for the two cores. Reports, which take longer, run on
a thread of their own.

One pass per text: an encoder pass gives every layer's token mean; the intent
head reads all of them and the sentence embedding (topics, knowledge search)
is the last layer's slice. A bounded LRU keeps text -> vector, so the assist
agent's knowledge search and topic of a final reuse the pass its intent made.
Requests that arrive while the encoder thread is busy wait and then go
through together as one batch (simultaneous finals of several calls).

The intent heads name the encoder they were trained on. When that is the same
as `encoder_model` (the MiniLM heads in models/intent_heads_minilm), they share
it and a final costs one pass; a head trained on another encoder (the shipped
heads' MPNet, a RoBERTa the user has) gets its own, and a final costs one pass
on each (intents on theirs, topics and knowledge on MiniLM).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

import numpy as np

from earshot.models.encoder import SentenceEncoder
from earshot.models.intent import (
    HEADS_DIR,
    LABEL_SETS,
    IntentClassifier,
    IntentHeadError,
    IntentPrediction,
    encoder_of,
    load_heads,
)
from earshot.models.model_files import ModelMissingError
from earshot.server.errors import StartupError
from earshot.server.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 32  # texts per encoder pass; a longer queue takes several passes
FEATURES, EMBEDDING = "features", "embedding"  # what a text is encoded into


@dataclass(frozen=True)
class _Vector:
    row: np.ndarray
    seconds: float  # the encoder time this row cost (its share of its batch)


class VectorCache:
    """A bounded LRU of (kind, text) -> vector. Used on the event loop only, so it needs no lock."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], _Vector] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str]) -> Optional[_Vector]:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return item

    def put(self, key: tuple[str, str], value: _Vector) -> None:
        if self.size <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class EncoderService:
    def __init__(self, encoder: SentenceEncoder, intents: Optional[IntentClassifier], cache_size: int = 1024) -> None:
        self.encoder = encoder
        self.intents = intents
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self.cache = VectorCache(cache_size)
        self._pending: dict[tuple[str, str], asyncio.Future] = {}  # waiting for the next pass
        self._drainer: Optional[asyncio.Task] = None
        self.batch_sizes: list[int] = []  # texts per encoder pass, most recent last (bounded), for the record

    @classmethod
    def load(cls, settings: Settings) -> "EncoderService":
        """Load the encoder and the intent heads; anything missing stops the start with its path."""
        try:
            encoder = SentenceEncoder.load(
                settings.encoder_model, threads=1, backend=settings.encoder_backend, onnx_cache=settings.encoder_onnx_cache
            )
            intents = load_classifier(settings, encoder) if settings.intent_enabled else None
        except (ModelMissingError, IntentHeadError) as exc:
            raise StartupError(str(exc)) from None
        log.info("sentence encoder on %s", encoder.backend)
        return cls(encoder, intents, settings.encoder_cache_size)

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `function` (which uses the encoder) on the encoder's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, partial(function, *args, **kwargs))

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length sentence embeddings, (len(texts), dim)."""
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        if self._embedding_from_features():
            rows = await self._vectors(FEATURES, texts)
            return self.encoder.embedding_of(np.stack([r.row for r in rows]))
        rows = await self._vectors(EMBEDDING, texts)
        return np.stack([r.row for r in rows])

    async def classify(self, text: str, label_set: str) -> IntentPrediction:
        intents = self.intents
        if intents is None:
            raise RuntimeError("intent classification is off (intent_enabled is false)")
        if label_set not in intents.heads:
            raise IntentHeadError(f"no intent head for label set {label_set!r}; loaded: {sorted(intents.heads)}")
        (vector,) = await self._vectors(FEATURES, [text])
        return intents.predict(vector.row[None, :], [text], label_set, vector.seconds)[0]

    def use_intents(self, intents: Optional[IntentClassifier]) -> None:
        """Classify with `intents` from now on (a reloaded head); cached features of another encoder are dropped."""
        if self.intents is None or intents is None or intents.encoder is not self.intents.encoder:
            self.cache.clear()
        self.intents = intents

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ one pass per text, batched

    def _embedding_from_features(self) -> bool:
        """True when the intent features already hold the embedding (same encoder, last-layer mean pooling)."""
        return self.intents is not None and self.intents.encoder is self.encoder and self.encoder.embedding_in_layer_means

    def _encoder_for(self, kind: str) -> SentenceEncoder:
        if kind == FEATURES and self.intents is not None:
            return self.intents.encoder
        return self.encoder

    async def _vectors(self, kind: str, texts: Sequence[str]) -> list[_Vector]:
        found: dict[str, _Vector] = {}
        waiting: dict[str, asyncio.Future] = {}
        for text in texts:
            if text in found or text in waiting:
                continue
            cached = self.cache.get((kind, text))
            if cached is not None:
                found[text] = cached
                continue
            future = self._pending.get((kind, text))
            if future is None:
                future = asyncio.get_running_loop().create_future()
                self._pending[(kind, text)] = future
            waiting[text] = future
        if waiting:
            if self._drainer is None or self._drainer.done():
                self._drainer = asyncio.ensure_future(self._drain())
            for text, future in waiting.items():
                found[text] = await asyncio.shield(future)
        return [found[text] for text in texts]

    async def _drain(self) -> None:
        """While requests wait: take them all, encode them in one pass on the encoder thread, hand out the rows."""
        while self._pending:
            batch = dict(list(self._pending.items())[:MAX_BATCH])
            for key in batch:
                del self._pending[key]
            self.batch_sizes = (self.batch_sizes + [len(batch)])[-1000:]
            try:
                rows = await self.run(self._compute, list(batch))
            except BaseException as exc:  # noqa: BLE001 - every waiter of the batch gets the failure
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            for key, row in zip(batch, rows):
                self.cache.put(key, row)
                if not batch[key].done():
                    batch[key].set_result(row)

    def _compute(self, keys: list[tuple[str, str]]) -> list[_Vector]:
        """Blocking, on the encoder thread: one encoder call per kind in the batch."""
        out: dict[tuple[str, str], _Vector] = {}
        # Embeddings first: when the intents have their own encoder (MPNet, ~20 ms a pass against MiniLM's ~5),
        # a customer's suggestion and topic need not wait behind the final's intent.
        for kind in (EMBEDDING, FEATURES):
            texts = [text for k, text in keys if k == kind]
            if not texts:
                continue
            encoder = self._encoder_for(kind)
            started = time.perf_counter()
            matrix = encoder.layer_means(texts) if kind == FEATURES else encoder.encode(texts)
            share = (time.perf_counter() - started) / len(texts)
            for text, row in zip(texts, matrix):
                out[(kind, text)] = _Vector(row, share)
        return [out[key] for key in keys]


def load_classifier(settings: Settings, shared: Optional[SentenceEncoder] = None) -> IntentClassifier:
    """A new IntentClassifier from `settings.intent_heads_dir` (for a start or a reload).

    Reuses `shared` (the service's encoder) when the heads were trained on the
    same encoder; otherwise loads the heads' own. Side-effect free: nothing in
    use is changed, so a reload can build one and swap it in only when it
    loaded. Raises IntentHeadError on a missing or bad head (or its encoder).
    """
    heads_dir = Path(settings.intent_heads_dir).expanduser() if settings.intent_heads_dir else HEADS_DIR
    heads = load_heads(LABEL_SETS, heads_dir)
    wanted = settings.intent_encoder or encoder_of(heads, heads_dir)
    if shared is not None and _same_encoder(wanted, settings.encoder_model):
        return IntentClassifier(shared, heads)
    log.info("intent heads use their own encoder at %s", wanted or "bundled")
    try:
        encoder = SentenceEncoder.load(
            wanted, threads=1, backend=settings.encoder_backend, onnx_cache=settings.encoder_onnx_cache
        )
    except ModelMissingError as exc:
        raise IntentHeadError(f"the intent heads in {heads_dir} need an encoder that does not load: {exc}") from None
    return IntentClassifier(encoder, heads)


def _same_encoder(a: str, b: str) -> bool:
    if not a or not b:
        return a == b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
