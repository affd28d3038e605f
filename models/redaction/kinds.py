"""The kinds of personal data the redactor finds, the tag each becomes, and the settings' way of naming a set of them."""

from __future__ import annotations

TAGS: dict[str, str] = {
    "card": "[CARD]",  # payment card numbers (Luhn-checked)
    "phone": "[PHONE]",
    "email": "[EMAIL]",
    "id": "[ID]",  # national ids, such as US social security numbers
    "iban": "[IBAN]",
    "account": "[ACCOUNT]",  # bank account, order and customer numbers said as such
    "dob": "[DOB]",  # dates of birth
    "address": "[ADDRESS]",  # street addresses
    "name": "[NAME]",  # person names
}
KINDS: tuple[str, ...] = tuple(TAGS)
# How a person reads each kind (the privacy notice's "Card numbers, phone numbers, ... are removed").
WORDS: dict[str, str] = {
    "card": "card numbers",
    "phone": "phone numbers",
    "email": "email addresses",
    "id": "national id numbers",
    "iban": "IBANs",
    "account": "account numbers",
    "dob": "dates of birth",
    "address": "street addresses",
    "name": "names",
}
assert WORDS.keys() == TAGS.keys(), "every kind needs its tag and its words"


class KindsError(ValueError):
    pass


def parse_kinds(value: str) -> frozenset[str]:
    """A setting's value (`all`, `none`, or a comma list of kinds) as a set of kinds."""
    items = [item.strip().lower() for item in value.split(",") if item.strip()]
    if items == ["all"]:
        return frozenset(KINDS)
    if items in ([], ["none"]):
        return frozenset()
    unknown = [item for item in items if item not in TAGS]
    if unknown:
        raise KindsError(f"unknown redaction kinds {', '.join(unknown)}; choose all, none, or from {', '.join(KINDS)}")
    return frozenset(items)
