"""Language tags (BCP 47, RFC 5646): the one check of a tag's form and its normal spelling, shared by the
OTP request's `locale`, the workspace's locale (admin, `create_workspace --locale`) and the workspace texts.

Here, at the bottom of the layers, because the workspace (its locale) and the OTP request both need it.
Which tags have texts, and what a tag falls back to, is otp.templating's.

Well-formed, not valid: the subtags' shapes are checked, not their presence in the IANA registry, so a
new or rare language is accepted and simply falls back to a language that has texts. Grandfathered
tags ("i-klingon") are refused: nobody sends them.
"""

import re

from zeckta.channels import LOCALE_MAX_LENGTH

# RFC 5646 section 2.1, the `langtag` production (case-insensitive):
#   language   2-3 letters with up to three 3-letter extlangs (the 4-8 letter forms the grammar reserves are
#              refused: no language has one, and "english" or "french" is a client's mistake to report)
#   script     4 letters              region   2 letters or 3 digits
#   variant    5-8 alphanumerics, or a digit and 3 alphanumerics
#   extension  a singleton (not x) and 2-8 alphanumerics, repeated; private use: x and 1-8 alphanumerics
_LANGTAG_RE = re.compile(
    r"""
    (?P<language>[a-z]{2,3}(?:-[a-z]{3}){0,3})
    (?:-(?P<script>[a-z]{4}))?
    (?:-(?P<region>[a-z]{2}|[0-9]{3}))?
    (?P<variants>(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*)
    (?P<extensions>(?:-[0-9a-wyz](?:-[a-z0-9]{2,8})+)*)
    (?P<private>-x(?:-[a-z0-9]{1,8})+)?
    """,
    re.VERBOSE,
)
# A tag that is nothing but private use ("x-whatever") names no language to fall back on: refused too.

LOCALE_ERROR = "Use a BCP 47 language tag such as en, fr or pt-BR."


def locale_normalise(tag: str) -> str | None:
    """The tag in its conventional case (RFC 5646 section 2.1.1: `pt-BR`, `zh-Hant-TW`, `sr-Latn`), or
    None when it is not a well-formed tag. An underscore is not a separator here (`pt_BR` is refused):
    the contract asks for BCP 47, and a client that sends a POSIX locale gets told so."""
    if not isinstance(tag, str) or not 2 <= len(tag) <= LOCALE_MAX_LENGTH or not tag.isascii():
        return None
    found = _LANGTAG_RE.fullmatch(tag.lower())
    if found is None:
        return None
    parts = [found["language"]]
    if found["script"]:
        parts.append(found["script"].title())
    if found["region"]:
        parts.append(found["region"].upper())
    rest = (found["variants"] or "") + (found["extensions"] or "") + (found["private"] or "")
    return "-".join(parts) + rest


def locale_lookup_chain(tag: str) -> list[str]:
    """The tags to try for a normalised `tag`, most specific first, as RFC 4647's Lookup truncates it:
    `zh-Hant-TW` -> `zh-Hant-TW`, `zh-Hant`, `zh`. Extensions and private use are dropped first (no text
    is ever kept under them), and a truncation never ends on a singleton."""
    subtags = tag.split("-")
    for index, subtag in enumerate(subtags):
        if index and len(subtag) == 1:  # the first extension or private-use singleton
            subtags = subtags[:index]
            break
    chain = []
    while subtags:
        chain.append("-".join(subtags))
        subtags = subtags[:-1]
    return chain


def locale_language(tag: str) -> str:
    """The primary language subtag of a normalised tag: `pt` for `pt-BR`."""
    return tag.split("-", 1)[0]
