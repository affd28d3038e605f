"""The Presidio analyzer the redactor runs: Presidio's own recognisers where they fit, ours for the rest.

Presidio's: CreditCardRecognizer (pattern + Luhn check), IbanRecognizer (pattern
+ check digits), UsSsnRecognizer and UkNinoRecognizer (national ids), and
PhoneRecognizer (Google's libphonenumber through `phonenumbers`, US and UK
numbers). E-mail: Presidio's pattern with its domain check run offline (below).
Ours: account, order and customer numbers said as such (and any other number of
8 digits or more), dates of birth, street addresses, phone numbers after a
phone cue that libphonenumber does not know (PatternRecognizers), and person
names (names.py).

Everything runs on the normalised line (spoken.py), where "four one one one ..."
is already 4111... . Nothing downloads: spaCy runs as a blank English pipeline
(a tokenizer; no model is on PyPI), and the e-mail check reads the public suffix
list snapshot that `tldextract` ships instead of fetching the current one.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Iterator, List, Optional

import regex
import tldextract


@contextmanager
def _without(*names: str) -> Iterator[None]:
    """Modules hidden while Presidio loads: importing one raises ImportError, which Presidio and spaCy allow.

    - transformers: Presidio imports it for an NLP engine we never use (its optional `from transformers
      import pipeline`); ~3 s of a server start on the 2-core dev container.
    - torch: spaCy's thinc imports it when it is installed, for layers we never use (the redactor runs a
      blank English tokenizer and rules). Hidden, this import takes 0.7 s instead of 1.6-2.2 s and its
      peak memory is 106 MB instead of 285 MB; with the checked ONNX encoder (models/encoder_onnx.py)
      a server then never loads torch.
    A module a process already imported stays; one hidden here is importable again afterwards.
    """
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment] - makes `import name` raise ImportError
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, "") is None:
                del sys.modules[name]


with _without("transformers", "torch"):
    import spacy
    from presidio_analyzer import (
        AnalyzerEngine,
        EntityRecognizer,
        LocalRecognizer,
        Pattern,
        PatternRecognizer,
        RecognizerRegistry,
        RecognizerResult,
    )
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        PhoneRecognizer,
        UkNinoRecognizer,
        UsSsnRecognizer,
    )

from earshot.models.redaction.names import NameFinder  # noqa: E402 - after Presidio, as it loads

# Presidio's entity name -> Earshot's kind (kinds.py)
ENTITY_KINDS: dict[str, str] = {
    "CREDIT_CARD": "card",
    "PHONE_NUMBER": "phone",
    "EMAIL_ADDRESS": "email",
    "US_SSN": "id",
    "UK_NINO": "id",
    "IBAN_CODE": "iban",
    "ACCOUNT_NUMBER": "account",
    "DATE_OF_BIRTH": "dob",
    "STREET_ADDRESS": "address",
    "PERSON": "name",
}
# Below this a result is dropped: a bare 9-digit number (SSN "very weak", 0.05) or a date (0.05) counts only
# with a context word before it ("social", "born"), which lifts it to 0.4.
SCORE_THRESHOLD = 0.4
PHONE_REGIONS = ("US", "GB")  # each region is one more libphonenumber pass over the line


class BlankSpacyNlpEngine(SpacyNlpEngine):
    """spaCy's blank English pipeline (tokenizer only), with lowercased tokens standing in for lemmas.

    Presidio's context words ("card", "social", "born") are matched against
    lemmas; a blank pipeline has none, so each token's lowercase form serves.
    spaCy documents no thread-safety for a shared Vocab, which tokenizing new
    words writes to, so tokenizing holds a lock (about 0.05 ms a line).
    """

    def __init__(self) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": "blank"}])
        self._lock = threading.Lock()

    def load(self) -> None:
        self.nlp = {"en": spacy.blank("en")}

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        with self._lock:
            doc = self.nlp[language](text)
            return NlpArtifacts(
                entities=[], tokens=doc, tokens_indices=[token.idx for token in doc],
                lemmas=[token.lower_ for token in doc], nlp_engine=self, language=language, scores=[],
            )


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail pattern; the domain check reads tldextract's bundled suffix list, never the network.

    Presidio's own check calls `tldextract.extract`, whose default extractor
    fetches the public suffix list from the internet on first use.
    """

    def __init__(self) -> None:
        self._domains = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)
        super().__init__()

    def load(self) -> None:
        self._domains("example.com")  # reads the snapshot now, not on a worker thread's first e-mail

    def validate_result(self, pattern_text: str) -> bool:
        return self._domains(pattern_text).fqdn != ""


_ACCOUNT_CUE = (r"(?:account|acct|order|customer|client|member(?:ship)?|policy|reference|ref|confirmation|booking|"
                r"invoice|loyalty|tracking|routing|claim|sort\s+code)")
_ACCOUNT_VALUE = r"(?=[a-z0-9-]*\d[a-z0-9-]*\d[a-z0-9-]*\d)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:[ -]\d{2,})*(?![a-z0-9])"


class AccountNumberRecognizer(PatternRecognizer):
    """A number said as an account, order, customer, policy ... number: the value after the cue.

    The cue is a (variable-length) lookbehind, so the span is the value only:
    "order number is 7734 19" -> "7734 19". The value has at least 3 digits.
    """

    PATTERNS = [Pattern(
        "account number after its cue",
        rf"(?<=\b{_ACCOUNT_CUE}(?:\s+(?:number|no\.?|num|id|code|#))?(?:\s*(?:is|was|it's|:|reads))?\s*#?\s*)"
        + _ACCOUNT_VALUE,
        0.85,
    )]

    def __init__(self) -> None:
        super().__init__(supported_entity="ACCOUNT_NUMBER", patterns=self.PATTERNS)


_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:(?:19|20)\d{2}|'?\d{2})"
_NUMERIC_DAY = r"(?:0?[1-9]|[12]\d|3[01])"


class DateOfBirthRecognizer(PatternRecognizer):
    """A date (written or, after normalising, spoken) that counts only with "born", "birth", "DOB" ... before it."""

    PATTERNS = [
        Pattern("month day year", rf"\b{_MONTH}\s+(?:the\s+)?{_DAY},?\s+(?:of\s+)?{_YEAR}\b", 0.05),
        Pattern("day month year", rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", 0.05),
        Pattern("numeric date", rf"\b{_NUMERIC_DAY}[/.-]{_NUMERIC_DAY}[/.-](?:(?:19|20)\d{{2}}|\d{{2}})\b", 0.05),
        Pattern("iso date", r"\b(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b", 0.05),
        Pattern("month day", rf"\b(?:{_MONTH}\s+{_DAY}|{_DAY}\s+of\s+{_MONTH})\b", 0.01),
    ]
    CONTEXT = ["born", "birth", "dob", "birthday", "birthdate"]

    def __init__(self) -> None:
        super().__init__(supported_entity="DATE_OF_BIRTH", patterns=self.PATTERNS, context=self.CONTEXT)


_STREET_NUMBER = r"\b\d{1,5}(?:\s?[A-Z](?![A-Za-z]))?"
_STREET_SUFFIX = (r"(?i:street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|terrace|"
                  r"close|crescent|parkway|pkwy|highway|hwy|circle|square|sq|row|trail|grove|gardens|mews)\b\.?")
_UNIT = r"(?:,?\s+(?i:apartment|apt|unit|suite|flat|floor|number|no)\.?\s*#?\s*\d+[A-Za-z]?\b)?"
_TOWN = r"(?:,\s*[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)?"
_POSTCODE = r"(?:,?\s+(?:[A-Z]{2}\s+)?\d{5}(?:-\d{4})?\b|,?\s+[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}\b)?"
_NOT_STREET = r"(?!(?i:the|a|an|of|to|in|on|at|my|our|your|down|up|this|that|and|or|from|for|more|other|minutes?|blocks?|miles?)\b)"


class StreetAddressRecognizer(PatternRecognizer):
    """A house number, one to three street-name words and a street word ("221 Baker Street, London NW1 6XE").

    Street names written with capitals (as Whisper writes them) count alone;
    lowercase ones only after "live", "address", "ship", "deliver" ... . A unit
    ("apartment 5"), a town and a US ZIP or UK postcode after it join the span.
    """

    PATTERNS = [
        Pattern("capitalised street",
                rf"{_STREET_NUMBER}\s+(?:(?:[A-Z][a-z'-]+|\d{{1,3}}(?:st|nd|rd|th))\s+){{1,3}}{_STREET_SUFFIX}{_UNIT}{_TOWN}{_POSTCODE}",
                0.6),
        Pattern("lowercase street",
                rf"{_STREET_NUMBER}\s+(?:{_NOT_STREET}(?:[A-Za-z][a-z'-]+|\d{{1,3}}(?:st|nd|rd|th))\s+){{1,3}}{_STREET_SUFFIX}{_UNIT}",
                0.1),
    ]
    CONTEXT = ["live", "living", "address", "ship", "shipping", "deliver", "delivery", "send", "mail", "moved",
               "reside", "located", "billing", "home", "house", "postcode", "zip"]

    def __init__(self) -> None:
        super().__init__(supported_entity="STREET_ADDRESS", patterns=self.PATTERNS, context=self.CONTEXT,
                         global_regex_flags=regex.DOTALL | regex.MULTILINE)


class PhoneFallbackRecognizer(PatternRecognizer):
    """10 to 13 digits right after "phone", "mobile", "call", "reach" ...: numbers libphonenumber does not know.

    PhoneRecognizer reports only numbers valid in their numbering plan; a caller
    may read out one that is not (a new range, a typo, Ofcom's 07700 900xxx).
    """

    PATTERNS = [Pattern("digits after a phone cue", r"(?<![\w+])\+?\d[\d\s().-]{8,18}\d(?!\d)", 0.05)]
    CONTEXT = ["phone", "mobile", "cell", "call", "reach", "text", "landline", "telephone", "number", "contact"]

    def __init__(self) -> None:
        super().__init__(supported_entity="PHONE_NUMBER", patterns=self.PATTERNS, context=self.CONTEXT,
                         name="PhoneFallbackRecognizer")

    def invalidate_result(self, pattern_text: str) -> bool:
        return not 10 <= sum(c.isdigit() for c in pattern_text) <= 13


class LongNumberRecognizer(PatternRecognizer):
    """Any number of 8 digits or more that nothing else claims: tagged as an account number.

    In a call such a number identifies someone or something of theirs, and Whisper
    often mishears the cue that says which ("my count number 77341922", "card
    number is for 111 111 111 111"). Every other recogniser scores higher and wins
    an overlap; amounts and years never reach 8 digits.
    """

    SCORE = 0.3  # below every other recogniser's threshold, so any of them wins an overlap
    PATTERNS = [Pattern("8 digits or more", r"(?<![\d.,])\d(?:[ -]?\d){7,}(?![\d/]|[.,-]\d)", SCORE)]

    def __init__(self) -> None:
        super().__init__(supported_entity="ACCOUNT_NUMBER", patterns=self.PATTERNS, name="LongNumberRecognizer")
        self.score_thresholds = {"default": self.SCORE}

    def invalidate_result(self, pattern_text: str) -> bool:
        return regex.fullmatch(r"\d{4}-\d{2}-\d{2}|\d{2}-\d{2}-\d{4}", pattern_text) is not None  # a date


class PersonNameRecognizer(LocalRecognizer):
    """Person names from the census gazetteer and call cues (names.py)."""

    def __init__(self, finder: NameFinder) -> None:
        self._finder = finder
        super().__init__(supported_entities=["PERSON"], name="PersonNameRecognizer")

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: List[str], nlp_artifacts: Optional[NlpArtifacts] = None) -> List[RecognizerResult]:
        return [
            RecognizerResult("PERSON", span.start, span.end, span.score,
                             recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                                   RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id})
            for span in self._finder.find(text)
        ]


def build_analyzer() -> AnalyzerEngine:
    recognizers: list[EntityRecognizer] = [
        CreditCardRecognizer(),
        IbanRecognizer(),
        UsSsnRecognizer(),
        UkNinoRecognizer(),
        PhoneRecognizer(supported_regions=PHONE_REGIONS),
        PhoneFallbackRecognizer(),
        OfflineEmailRecognizer(),
        AccountNumberRecognizer(),
        LongNumberRecognizer(),
        DateOfBirthRecognizer(),
        StreetAddressRecognizer(),
        PersonNameRecognizer(NameFinder.load()),
    ]
    return AnalyzerEngine(
        registry=RecognizerRegistry(recognizers=recognizers, supported_languages=["en"]),
        nlp_engine=BlankSpacyNlpEngine(),
        supported_languages=["en"],
        default_score_threshold=SCORE_THRESHOLD,
        context_aware_enhancer=LemmaContextAwareEnhancer(context_matching_mode="whole_word"),
    )
