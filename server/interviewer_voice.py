"""The interviewer's voice on one call: sentences -> Piper -> the outbound WebRTC track.

`SessionVoice` is the server's side of `agents.ports.Voice`. Synthesis starts
when a reply is *prepared* (during the candidate's turn pause), and playing
releases each sentence to the track, and its words to the page, in order.

If the TTS fails, the call goes on in text only: the words still reach the
page, and the client gets one `tts_failed` notice.

What the voice measures goes to a `VoiceTimings` (the server's /metrics):
the TTS's time to first audio of each utterance (its first sentence, text in
-> audio ready), and, through `BargeInTimer`, how soon the caller stopped
hearing the interviewer when they talked over it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import AsyncIterable, Awaitable, Callable, Iterable, Optional

from earshot.agents.ports import Sentences, SpeechResult
from earshot.models.tts import PiperTts, SpokenAudio, TtsError
from earshot.server.outbound_track import AgentVoiceTrack, PlaybackEnd

log = logging.getLogger(__name__)

PHRASE_CACHE_ENTRIES = 128  # ~0.3 MB per sentence at 48 kHz: bounded at a few tens of MB


def _ignore(*args: object) -> None:
    return None


@dataclass(frozen=True)
class VoiceTimings:
    """Where a server's interviewer voices report what they measured (ServerMetrics' methods; nowhere by default).

    first_audio(seconds, cached): an utterance's first sentence, text in -> its audio ready to play
    (synthesis and its wait for the one TTS thread; ~0 when the phrase cache had it).
    barge_in_stop(seconds): the candidate's voice start -> the interviewer's first silent frame, for a cut that stuck.
    """

    first_audio: Callable[[float, bool], None] = _ignore
    barge_in_stop: Callable[[float], None] = _ignore


class PhraseCache:
    """Synthesised sentences shared by every call of the server, newest kept.

    Acknowledgements, fixed phrases and bank questions repeat across turns and
    calls; hearing them from the cache makes the first audio of a reply
    immediate.
    """

    def __init__(self, tts: Optional[PiperTts], entries: int = PHRASE_CACHE_ENTRIES) -> None:
        self._tts = tts
        self._entries = entries
        self._audio: OrderedDict[str, SpokenAudio] = OrderedDict()

    @property
    def available(self) -> bool:
        return self._tts is not None

    def cached(self, text: str) -> bool:
        return text in self._audio

    async def speak(self, text: str) -> SpokenAudio:
        cached = self._audio.get(text)
        if cached is not None:
            self._audio.move_to_end(text)
            return cached
        if self._tts is None:
            raise TtsError("speech output is off")
        audio = await self._tts.synthesize(text)
        self._audio[text] = audio
        while len(self._audio) > self._entries:
            self._audio.popitem(last=False)
        return audio

    async def warm(self, phrases: Iterable[str]) -> None:
        for phrase in phrases:
            await self.speak(phrase)


_END = object()
Synthesize = Callable[[str], Awaitable[Optional[SpokenAudio]]]


class _Prepared:
    """Sentences turned into audio in the background, in order, ready to play."""

    def __init__(
        self,
        sentences: Sentences,
        synthesize: Synthesize,
        synthesize_first: Synthesize,  # the utterance's first sentence: its time is the time to first audio
    ) -> None:
        self._ready: asyncio.Queue = asyncio.Queue()
        self._synthesize = synthesize
        self._synthesize_first = synthesize_first
        self._task = asyncio.ensure_future(self._produce(sentences))

    async def _produce(self, sentences: Sentences) -> None:
        synthesize = self._synthesize_first
        try:
            async for sentence in _each(sentences):
                sentence = sentence.strip()
                if sentence:
                    self._ready.put_nowait((sentence, await synthesize(sentence)))
                    synthesize = self._synthesize
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in a sentence source must not hang the call: end the reply
            log.exception("preparing speech failed")
        finally:
            self._ready.put_nowait(_END)

    async def next(self) -> object:
        return await self._ready.get()

    def cancel(self) -> None:
        self._task.cancel()


async def _each(sentences: Sentences) -> AsyncIterable[str]:
    if hasattr(sentences, "__aiter__"):
        async for sentence in sentences:  # type: ignore[union-attr]
            yield sentence
    else:
        for sentence in sentences:  # type: ignore[union-attr]
            yield sentence


class SessionVoice:
    def __init__(
        self,
        phrases: PhraseCache,
        on_audio_start: Callable[[int], None],
        on_audio_end: Callable[[PlaybackEnd], None],
        on_tts_failed: Callable[[str], None],
        on_first_audio: Callable[[float, bool], None] = _ignore,  # VoiceTimings.first_audio
        barge_in: Optional[BargeInTimer] = None,
    ) -> None:
        self._phrases = phrases
        self._text_only = not phrases.available
        self._on_audio_end = on_audio_end
        self._on_tts_failed = on_tts_failed
        self._on_first_audio = on_first_audio
        self._barge_in = barge_in
        self.track = AgentVoiceTrack(
            on_start=on_audio_start,
            on_end=self._ended,
            on_sentence=self._sentence_heard,
            on_silenced=barge_in.silenced if barge_in is not None else None,
        )
        self._ends: dict[int, asyncio.Future] = {}
        self._sentence_listeners: dict[int, Callable[[str], None]] = {}
        self._stopped = asyncio.Event()
        self._prepared: set[_Prepared] = set()

    # --- agents.ports.Voice -------------------------------------------------------------
    def prepare(self, sentences: Sentences) -> _Prepared:
        prepared = _Prepared(sentences, self._synthesize, self._synthesize_first)
        self._prepared.add(prepared)
        return prepared

    async def play(self, utterance_id: int, speech: _Prepared, on_sentence: Callable[[str], None]) -> SpeechResult:
        self._stopped.clear()
        released: list[str] = []
        queued = False
        ended = asyncio.get_running_loop().create_future()
        self._ends[utterance_id] = ended
        # A sentence's words go out when its audio starts, so the page never shows
        # words the caller did not hear (a cut reply shows only what was said).
        self._sentence_listeners[utterance_id] = on_sentence
        try:
            while not self._stopped.is_set():
                item = await _first(speech.next(), self._stopped.wait())
                if item is _END or item is None:
                    break
                sentence, audio = item
                released.append(sentence)
                if audio is not None:
                    self.track.enqueue(utterance_id, audio)
                    queued = True
                else:
                    on_sentence(sentence)  # text only: nothing to wait for
            speech.cancel()
            self._prepared.discard(speech)
            text = " ".join(released)
            if not queued:
                return SpeechResult(self._stopped.is_set(), 0.0, text, text)
            if self._stopped.is_set():
                if not ended.done():  # cut before the track had anything of it to report
                    return SpeechResult(True, 0.0, "", text)
            else:
                self.track.finish_utterance(utterance_id)
            end: PlaybackEnd = await ended
            return SpeechResult(end.interrupted, end.played_s, end.spoken_text, text)
        finally:
            self._ends.pop(utterance_id, None)
            self._sentence_listeners.pop(utterance_id, None)

    def pause(self) -> None:
        self.track.pause()

    def resume(self) -> None:
        self.track.resume()
        if self._barge_in is not None:
            self._barge_in.resumed()

    def stop(self) -> None:
        self._stopped.set()
        self.track.interrupt()

    @property
    def speaking(self) -> bool:
        return self.track.speaking

    # --- internals ----------------------------------------------------------------------
    async def _synthesize(self, sentence: str) -> Optional[SpokenAudio]:
        if self._text_only:
            return None
        try:
            return await self._phrases.speak(sentence)
        except TtsError as exc:
            self._text_only = True
            log.warning("TTS failed, going on in text only: %s", exc)
            self._on_tts_failed(str(exc))
            return None

    async def _synthesize_first(self, sentence: str) -> Optional[SpokenAudio]:
        cached = self._phrases.cached(sentence)
        started = time.perf_counter()
        audio = await self._synthesize(sentence)
        if audio is not None:
            try:
                self._on_first_audio(time.perf_counter() - started, cached)
            except Exception:  # a metrics bug must not silence the interviewer
                log.exception("first-audio observer failed")
        return audio

    def _sentence_heard(self, started: tuple[int, str]) -> None:
        utterance_id, text = started
        listener = self._sentence_listeners.get(utterance_id)
        if listener is not None:
            listener(text)

    def _ended(self, end: PlaybackEnd) -> None:
        if self._barge_in is not None:
            self._barge_in.ended(end)
        future = self._ends.get(end.utterance_id)
        if future is not None and not future.done():
            future.set_result(end)
        self._on_audio_end(end)

    def close(self) -> None:
        if self._barge_in is not None:
            self._barge_in.close()  # the teardown's cut is no barge-in
        for prepared in list(self._prepared):
            prepared.cancel()
        self._prepared.clear()
        self._stopped.set()
        self.track.interrupt()
        self.track.stop()  # ends the MediaStreamTrack itself


class BargeInTimer:
    """Barge-in stop time on one call: the candidate's voice start -> the interviewer's first silent frame.

    Both ends are on the call's audio clock: the start is the voice onset's `at_s` (where the VAD
    heard the voice begin), the end is the clock when the track sent the first silent frame in
    place of the utterance the caller was hearing, once paused or cut (`silenced`). It is counted
    when that utterance ends interrupted, so the cut stuck: a pause undone (a click, a backchannel)
    is no stop, and the call's own teardown (`close`), which cuts what is playing too, is not counted.
    """

    def __init__(self, clock: Callable[[], float], observe: Callable[[float], None]) -> None:
        self._clock = clock
        self._observe = observe
        self._onset_s: Optional[float] = None  # the candidate's latest voice onset
        self._silenced: Optional[tuple[int, float]] = None  # (utterance, onset -> silence) of the pause in force
        self._cut: Optional[int] = None  # ended interrupted while audible: its silent frame is still to go out
        self._closed = False

    def voice_onset(self, at_s: float) -> None:
        self._onset_s = at_s

    def silenced(self, utterance_id: int) -> None:
        if self._onset_s is None:
            return
        stop_s = max(0.0, self._clock() - self._onset_s)
        if self._cut == utterance_id:
            self._cut = None
            self._count(stop_s)
        else:
            self._silenced = (utterance_id, stop_s)

    def resumed(self) -> None:
        self._silenced = None

    def ended(self, end: PlaybackEnd) -> None:
        if not end.interrupted or end.played_s <= 0:  # played out, or cut before the caller heard any of it
            return
        silenced, self._silenced = self._silenced, None
        if silenced is not None and silenced[0] == end.utterance_id:
            self._count(silenced[1])
        else:
            self._cut = end.utterance_id

    def close(self) -> None:
        self._closed = True

    def _count(self, stop_s: float) -> None:
        if not self._closed:
            self._observe(stop_s)


async def _first(*awaitables: Awaitable) -> object:
    """The result of whichever awaitable finishes first (None for a bare event); the others are cancelled."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        first = tasks[0] if tasks[0] in done else next(iter(done))
        result = first.result()
        return None if result is True else result
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
