"""Person names without an NER model: a census name list, and the cues callers use to say a name.

Why no NER model: spaCy's English pipelines are not on PyPI (they download from
GitHub at run time, which Earshot never does), and a transformer NER pass would
cost tens of milliseconds a line on a CPU core, ten times the redaction budget.
Names in a call follow a handful of patterns instead ("my name is ...", "this is
... speaking", "Mr. ...", "I spoke with ..."), and Whisper writes names
capitalised, so a gazetteer with those cues finds them in microseconds.

The gazetteer: the US census 1990 name lists that the `names` package (MIT)
ships: 1,219 male and 4,275 female first names and 88,799 last names. The
last-name list holds many English words (Bank, Card, Call, Monday), so a last
name only ever counts beside a first name or after a cue.

A token is a name:
1. after a strong cue ("my name is", "call me", "Mr."/"Mrs."/"Ms."/"mister"):
   when capitalised, or in the gazetteer if Whisper wrote it lowercase (a first
   name that is also a month or a common word counts here: "my name is June");
2. after a weak cue ("this is", "I'm", "speaking with", "ask for", "hi", ...):
   when capitalised and in the gazetteer;
3. anywhere: a capitalised common first name (the 1,500 most frequent female
   and 800 most frequent male names), unless it is also a common word
   (AMBIGUOUS: Will, May, Mark, Grace, Austin, ...), which needs a cue or a
   capitalised surname after it ("Mark Rivera");
4. after "spelled": capital letters spelled one by one ("R I V E R A").
A found name takes up to two more capitalised tokens (or, after a strong cue,
lowercase ones from the last-name list) as its surname. Words that are never
names in a call (months, weekdays, card brands, departments, languages,
nationalities, street words) are excluded everywhere.

Limits: a lowercase surname outside the list after a strong cue is missed
("mister john dashwood" redacts "john" only); a name that is not a common first
name and has no cue is missed ("Okafor called"); a capitalised product after a
cue can be taken for a name. The labelled set measures it (see the README).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from earshot.models.redaction.numbers import NUMBER_WORDS, Token

COMMON_FEMALE = 1500
COMMON_MALE = 800

# Cues are matched on words: "Mr." is "mr" and a full stop, which the match skips.
STRONG_CUES = ("my name is", "my name's", "name is", "name's", "names is", "my name was", "call me", "mr", "mrs", "ms",
               "mister", "missus")
WEAK_CUES = ("this is", "i'm", "i am", "it's", "it is", "speaking with", "speak with", "speak to", "spoke to",
             "spoke with", "talking to", "talking with", "talk to", "talked to", "ask for", "asked for",
             "transfer you to", "through to", "hi", "hello", "hey", "thanks", "thank you", "dear", "bye", "miss",
             "doctor", "dr", "my wife", "my husband", "my son", "my daughter",
             "my manager", "my colleague", "my friend")
SUFFIX_CUES = ("speaking", "calling")
SPELL_CUES = ("spelled", "spell", "spelling", "spelt")

AMBIGUOUS = frozenset("""
will may june april august mark bill grace hope joy faith charity rose lily ivy iris daisy holly violet fern hazel
pearl ruby amber crystal jewel opal ginger candy sandy dawn summer autumn melody harmony penny brandy sherry cherry
olive misty kitty dolly angel precious queen gay gale lacy paige terra pansy robin eve chase miles hunter clay pat
rob nick rocky rusty buddy chuck cliff rod brain son young christian junior sterling marshall israel jordan dallas
austin cleveland devon harley roman van reed ward cole basil dale forrest drew art rex noel kirk heath mason taylor
jesus wiley jackson morgan kent marion carolina virginia georgia chelsea geneva florence victoria regina savannah
kenya india china asia sierra aurora mercedes tiffany jasmine heather myrtle bonnie ebony destiny trinity jade star
sky storm patience mercy lane dean grant frank earl guy ray don jack max lance wade gene sue ken dee kay jan bob lee
ed al jo ty bo sunny honey sugar lucky bud carol case bell price page king major duke prince sale wes
""".split())
NOT_NAMES = frozenset("""
january february march april may june july august september october november december monday tuesday wednesday
thursday friday saturday sunday today tomorrow yesterday visa mastercard amex discover maestro paypal bank card
account premium plus pro basic gold platinum silver express prime support billing sales team manager customer
service services supervisor someone tech technical department python java ruby julia rust swift kotlin excel jira
slack zoom teams google apple amazon microsoft netflix tesla ford dell chase wells fargo barclays lloyds santander
citi capital god lord christ christmas easter thanksgiving halloween english spanish french german italian irish
scottish welsh british american canadian mexican indian chinese japanese korean australian european street road
avenue lane drive boulevard court place terrace close crescent way highway parkway square apartment suite unit
okay ok hello hi hey yes yeah no thanks thank sorry please sir madam ma'am mister miss missus mr mrs ms dr doctor
uh um hmm oh well so and but or the a an this that it its is was calling speaking here there
""".split())


@dataclass(frozen=True)
class NameSpan:
    start: int
    end: int
    score: float


def _capitalised(word: Token) -> bool:
    """Written with a capital, as Whisper writes names; not an acronym ("SSN") or a spelled letter."""
    return len(word.text) > 1 and word.text[0].isupper() and not word.text.isupper()


def _letter(word: Token) -> bool:
    return len(word.text) == 1 and word.text.isupper()


def _base(lower: str) -> str:
    """Without a possessive: "rivera's" -> "rivera"."""
    return lower.removesuffix("'s").removesuffix("\u2019s")


_ELIDED_PREFIX = re.compile(r"[A-Z]['\u2019][A-Z]")
_WORD = re.compile(r"[A-Za-z][A-Za-z]*(?:['\u2019][A-Za-z]+)?(?:-[A-Za-z]+)?|[^\sA-Za-z]")
_STRONG = 0.85
_WEAK = 0.7
_BARE = 0.6


class NameFinder:
    """The gazetteer, read once; `find(text)` is pure and safe from any thread."""

    def __init__(self, first: frozenset[str], common_first: frozenset[str], last: frozenset[str],
                 stop_words: frozenset[str]) -> None:
        self.first = first
        self.common_first = common_first - AMBIGUOUS
        self.last = last
        self.stop_words = stop_words  # spaCy's English list: never a name written lowercase
        # cue words -> the strongest score a cue of those words gives; looked up by the 1-3 words before a name
        self.cues: dict[tuple[str, ...], float] = {}
        for cue, score in [(c, _WEAK) for c in WEAK_CUES] + [(c, _STRONG) for c in STRONG_CUES]:
            self.cues[tuple(cue.split())] = max(score, self.cues.get(tuple(cue.split()), 0.0))

    @classmethod
    def load(cls) -> NameFinder:
        """Reads the name lists (about 0.1 s): each line is a name, its frequency, and its rank, most frequent first."""
        from spacy.lang.en.stop_words import STOP_WORDS

        folder = resources.files("names")

        def read(name: str) -> list[str]:
            lines = folder.joinpath(name).read_text(encoding="ascii").splitlines()
            return [line.split()[0].lower() for line in lines if line.strip()]

        male, female = read("dist.male.first"), read("dist.female.first")
        common = frozenset(male[:COMMON_MALE] + female[:COMMON_FEMALE])
        return cls(frozenset(male + female), common, frozenset(read("dist.all.last")), frozenset(STOP_WORDS))

    def find(self, text: str) -> list[NameSpan]:
        words = [Token(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
        found: list[NameSpan] = []
        index = 0
        while index < len(words):
            span = self._name_at(words, index)
            if span is None:
                index += 1
                continue
            first, last, score = span
            end = words[last].end
            if words[last].lower.endswith(("'s", "\u2019s")):
                end -= 2  # "Karen Smith's name": the name without its possessive
            found.append(NameSpan(words[first].start, end, score))
            index = last + 1
            spelled = self._spelled_after(words, index)  # "my name is Jamal, J A M A L"
            if spelled > index:
                found.append(NameSpan(words[index].start if words[index].text != "," else words[index + 1].start,
                                      words[spelled - 1].end, score))
                index = spelled
        return found

    @staticmethod
    def _spelled_after(words: list[Token], index: int) -> int:
        """The end (exclusive) of two or more letters spelled right after a name (a comma between), else `index`."""
        start = index + 1 if index < len(words) and words[index].text == "," else index
        end = start
        while end < len(words) and _letter(words[end]):
            end += 1
        return end if end - start >= 2 else index

    def _name_at(self, words: list[Token], index: int) -> tuple[int, int, float] | None:
        """(first word, last word, score) of a name starting at `index`, or None."""
        word = words[index]
        if self._spelled_after_cue(words, index):
            end = index
            while end + 1 < len(words) and _letter(words[end + 1]):
                end += 1
            return (index, end, _STRONG) if end > index else None
        lower = _base(word.lower)
        cue = self._cue_before(words, index)
        if not (self._name_like(word) or cue == _STRONG and lower in self.first):  # "my name is June"
            return None
        known = lower in self.first or lower in self.last
        if cue == _STRONG and (_capitalised(word) or known):
            return index, self._surname_end(words, index, lowercase=True), _STRONG
        if not _capitalised(word):
            return None
        end = self._surname_end(words, index, lowercase=False)
        opens = index == 0 or not words[index - 1].text[0].isalpha()
        introduced = end + 1 < len(words) and words[end + 1].lower in SUFFIX_CUES and (cue or opens)
        if (cue == _WEAK and known) or introduced:
            return index, end, _WEAK
        if lower in self.common_first:
            return index, end, _BARE
        if lower in self.first:
            end = self._surname_end(words, index, lowercase=False, known_only=True)
            if end > index:
                return index, end, _BARE  # "Mark Rivera": a common word as a first name, with a surname after it
        return None

    def _name_like(self, word: Token) -> bool:
        lower = _base(word.lower)
        if ("'" in lower or "\u2019" in lower) and not _ELIDED_PREFIX.match(word.text):
            return False  # "I'm", "It's", "Don't"; not "O'Brien", "D'Angelo"
        return (len(lower) > 1 and word.text[0].isalpha() and lower not in NOT_NAMES and lower not in NUMBER_WORDS
                and (lower not in self.stop_words or _capitalised(word) and lower in self.first))  # "Will Thompson"

    def _cue_before(self, words: list[Token], index: int) -> float:
        """The strongest cue that ends right before `index` (a title's full stop, commas and fillers skipped)."""
        end = index
        while end > 0 and (words[end - 1].text in (".", ",", ":") or words[end - 1].lower in ("uh", "um")):
            end -= 1
        before = tuple(w.lower for w in words[max(0, end - 3):end])
        # A dict lookup per suffix, not a scan of every cue: this runs for every word (it was 45% of redaction time).
        return max((self.cues.get(before[-n:], 0.0) for n in range(1, len(before) + 1)), default=0.0)

    def _spelled_after_cue(self, words: list[Token], index: int) -> bool:
        if not _letter(words[index]):
            return False
        before = [w.lower for w in words[max(0, index - 3):index] if w.text not in (",", ":", "-")]
        return any(w in SPELL_CUES for w in before)

    def _surname_end(self, words: list[Token], index: int, lowercase: bool, known_only: bool = False) -> int:
        end = index
        while end + 1 < len(words) and end - index < 2:
            nxt = words[end + 1]
            lower = _base(nxt.lower)
            if not self._name_like(nxt) or lower in AMBIGUOUS and not _capitalised(nxt):
                break
            if _capitalised(nxt) and (not known_only or lower in self.last):
                end += 1
            elif lowercase and not _capitalised(nxt) and lower in self.last and lower not in self.stop_words:
                end += 1
            else:
                break
        return end

