"""How a setting is declared and seen: `setting()` makes a Settings field
with its default, parser, one-line description and aliases; `Key` is the same
setting as the environment sees it, read back from the field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .config_parsers import Parser


def setting(default: str, parse: Parser, doc: str, *aliases: str, in_example: bool = True) -> Any:
    """One setting: its default (as the environment would spell it), parser,
    one-line description and alias names. `in_example=False` writes it to
    .env.example commented out (the systemd unit sets it)."""
    return dataclasses.field(
        default=parse(default),
        metadata={
            "default": default,
            "parse": parse,
            "doc": doc,
            "aliases": aliases,
            "in_example": in_example,
        },
    )


@dataclasses.dataclass(frozen=True)
class Key:
    """One setting as the environment sees it (derived from a Settings field)."""

    field: str
    env: str
    default: str
    parse: Parser
    doc: str
    aliases: tuple[str, ...]
    in_example: bool


def keys_of(settings_class: type) -> tuple[Key, ...]:
    """The Key of each field `setting()` declared on `settings_class`, in order."""
    return tuple(
        Key(field=f.name, env=f.name.upper(), **f.metadata)
        for f in dataclasses.fields(settings_class)
    )
