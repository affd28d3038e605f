"""PII redaction: spans of personal data in a transcript line become typed tags ([CARD], [PHONE], ...).

kinds.py names the kinds and their tags (a leaf: settings checks import it
without loading the recognisers); the redactor itself loads on first use.
"""
