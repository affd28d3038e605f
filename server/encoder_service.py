"""The process's sentence encoder, and the one thread it runs on.

Intent classification (every final of every call), assist topics and
knowledge search, and interview reports all embed text with the same
MiniLM. One copy is loaded. The live work (intents, topics, knowledge) runs
on one dedicated thread in arrival order: encodes are short (~5-10 ms for an
utterance), and one torch thread keeps them from competing with Whisper for
the two cores. Reports, which take longer, run on a thread of their own.

The intent heads name the encoder they were trained on. When that is the same
as `encoder_model` (the default: the bundled MiniLM), they share it; a head
trained on another encoder (a RoBERTa the user has) gets its own.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
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


class EncoderService:
    def __init__(self, encoder: SentenceEncoder, intents: Optional[IntentClassifier]) -> None:
        self.encoder = encoder
        self.intents = intents
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")

    @classmethod
    def load(cls, settings: Settings) -> "EncoderService":
        """Load the encoder and the intent heads; anything missing stops the start with its path."""
        try:
            encoder = SentenceEncoder.load(settings.encoder_model, threads=1)
            intents = _load_intents(settings, encoder) if settings.intent_enabled else None
        except (ModelMissingError, IntentHeadError) as exc:
            raise StartupError(str(exc)) from None
        return cls(encoder, intents)

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `function` (which uses the encoder) on the encoder's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, partial(function, *args, **kwargs))

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        return await self.run(self.encoder.encode, list(texts))

    async def classify(self, text: str, label_set: str) -> IntentPrediction:
        if self.intents is None:
            raise RuntimeError("intent classification is off (intent_enabled is false)")
        return await self.run(self.intents.classify, text, label_set)

    def swap_intents(self, intents: IntentClassifier) -> Optional[IntentClassifier]:
        """Classify with `intents` from now on (one assignment; what is queued keeps the old heads); the old ones."""
        old, self.intents = self.intents, intents
        return old

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def _load_intents(settings: Settings, shared: SentenceEncoder) -> IntentClassifier:
    heads_dir = Path(settings.intent_heads_dir).expanduser() if settings.intent_heads_dir else HEADS_DIR
    heads = load_heads(LABEL_SETS, heads_dir)
    wanted = settings.intent_encoder or encoder_of(heads, heads_dir)
    if _same_encoder(wanted, settings.encoder_model):
        return IntentClassifier(shared, heads)
    log.info("intent heads use their own encoder at %s", wanted)
    return IntentClassifier(SentenceEncoder.load(wanted, threads=1), heads)


def _same_encoder(a: str, b: str) -> bool:
    if not a or not b:
        return a == b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
