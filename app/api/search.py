"""Mailpit's search syntax, the part that fits one mailbox (pure).

`to:`, `from:`, `subject:`, `message-id:`, `tag:` (one tag, any case),
`is:read`, `is:unread`, `is:tagged`, `has:attachment(s)`, ours `has:code`
(a one-time code or a verification link), and free text;
words are split on spaces outside double quotes; a leading `-` or `!`
negates. At most MAX_TERMS terms: each is one more condition over the
mailbox, and thousands would hold one of the API's few database
connections for seconds.
"""

from __future__ import annotations

from .queries_search import Term

MAX_TERMS = 20
FIELDS = ("to", "from", "subject", "message-id", "tag")
FLAGS = {
    "is:read": Term("read", "true"),
    "is:unread": Term("read", "false"),
    "is:tagged": Term("tagged", ""),
    "has:attachment": Term("attachment", ""),
    "has:attachments": Term("attachment", ""),
    "has:code": Term("code", ""),  # ours: a one-time code or a verification link
}


class Refused(ValueError):
    """A query past the bounds (its text is the 400's)."""


def words(query: str) -> list[str]:
    """`query` split on spaces outside double quotes, the quotes removed."""
    found: list[str] = []
    current: list[str] = []
    quoted = False
    for char in query:
        if char == '"':
            quoted = not quoted
        elif char == " " and not quoted:
            found.append("".join(current))
            current = []
        else:
            current.append(char)
    found.append("".join(current))
    return [w.strip() for w in found if w.strip()]


def terms(query: str) -> list[Term]:
    """The search conditions of `query` ([] for an empty one); raises Refused."""
    found = []
    for word in words(query):
        exclude = len(word) > 1 and word[0] in "-!"
        if exclude:
            word = word[1:]
        flag = FLAGS.get(word.lower())
        field, colon, value = word.partition(":")
        if flag is not None:
            found.append(Term(flag.field, flag.value, exclude))
        elif colon and field.lower() in FIELDS:
            if value.strip():
                found.append(Term(field.lower(), value.strip(), exclude))
        else:
            found.append(Term("text", word, exclude))
    if len(found) > MAX_TERMS:
        raise Refused(f"Error: at most {MAX_TERMS} search terms")
    return found
