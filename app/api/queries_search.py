"""Which of a mailbox's messages a request means, as SQL text (pure): what a
message shows as its tags and its seen flag, and the WHERE of search terms
(alias `e` for emails), with their $-arguments.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

# What a message shows as its tags (Mailpit's Tags, `tag:` in search, GET
# /tags, /info): its own tags, and `junk` when the defence marked it junk
# (emails.junk). PUT, rename and DELETE of tags change only e.tags: the junk
# mark is the checks' verdict, not a tag a reader can take off.
TAGS = (
    "(coalesce(e.tags, '{}'::text[]) || CASE WHEN e.junk AND NOT "
    "coalesce(lower('junk') = ANY(SELECT lower(t) FROM unnest(e.tags) t), false) "
    "THEN '{junk}'::text[] ELSE '{}'::text[] END)"
)
SEEN = "('\\Seen' = ANY(coalesce(e.flags, '{}')))"


@dataclasses.dataclass(frozen=True)
class Term:
    """One search condition: `field` is one of SEARCH_FIELDS, or 'read',
    'attachment', 'tag' (one tag, any case), 'tagged' (any tag)."""

    field: str
    value: str
    exclude: bool = False


# Search field -> the SQL text it matches (ILIKE) against; never user input.
SEARCH_FIELDS = {
    "to": "array_to_string(coalesce(e.header_to, e.to_addrs), ' ')",
    "from": "(coalesce(e.header_from, '') || ' ' || e.from_addr)",
    "subject": "e.subject",
    "message-id": "coalesce(e.message_id, '')",
    "text": (
        "(e.subject || ' ' || coalesce(e.header_from, '') || ' ' || e.from_addr || ' ' || "
        "array_to_string(coalesce(e.header_to, e.to_addrs), ' ') || ' ' || e.body)"
    ),
}
# Conditions without a value (a term's `value` says which way for 'read').
FLAG_CONDITIONS = {
    "read": SEEN,
    "attachment": "(jsonb_array_length(coalesce(e.attachments, '[]'::jsonb)) > 0)",
    "tagged": f"(cardinality({TAGS}) > 0)",
    # A one-time code or a verification link (README "Codes and links").
    "code": "(coalesce(cardinality(e.codes), 0) > 0 OR e.verify_link IS NOT NULL)",
}


def like_pattern(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_condition(terms: Sequence[Term], first_arg: int) -> tuple[str, list[Any]]:
    """SQL conditions (ANDed) for `terms`, with $-arguments from `first_arg` on."""
    parts: list[str] = []
    args: list[Any] = []
    for term in terms:
        exclude = term.exclude != (term.field == "read" and term.value == "false")
        if term.field in FLAG_CONDITIONS:
            condition = FLAG_CONDITIONS[term.field]
        elif term.field == "tag":
            args.append(term.value)
            number = first_arg + len(args) - 1
            condition = f"(lower(${number}) = ANY(SELECT lower(t) FROM unnest({TAGS}) t))"
        else:
            args.append(like_pattern(term.value))
            condition = f"({SEARCH_FIELDS[term.field]} ILIKE ${first_arg + len(args) - 1})"
        parts.append(f"NOT {condition}" if exclude else condition)
    return (" AND ".join(parts) or "true"), args


def selection(
    address: str, ids: Sequence[uuid.UUID] | None = None, terms: Sequence[Term] = ()
) -> tuple[str, list[Any]]:
    """The WHERE of `address`'s rows (alias e): all, `ids` only, and/or those `terms` match."""
    where = "e.mailbox_owner = $1"
    args: list[Any] = [address]
    if ids is not None:
        args.append(list(ids))
        where += f" AND e.id = ANY(${len(args)})"
    if terms:
        condition, more = search_condition(terms, len(args) + 1)
        where += f" AND {condition}"
        args += more
    return where, args
