"""The texts made from the settings' declarations: .env.example and the
README's settings table (`python -m app.config` rewrites both).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .config_keys import Key

TABLE_HEADER = "| setting | default | what it does |"


def env_example(keys: Sequence[Key]) -> str:
    """The text of .env.example: every key with its default and description."""
    lines = [
        "# Settings of the receive-only SMTP service. Copy to .env and edit.",
        "# The environment wins over this file. Every value below is the default.",
        "",
    ]
    for key in keys:
        alias = f" (alias: {', '.join(key.aliases)})" if key.aliases else ""
        lines.append(f"# {key.doc}{alias}")
        if key.in_example:
            lines.append(f"{key.env}={key.default}")
        else:
            lines.append("# set by deploy/systemd; here it would override the unit's path")
            lines.append(f"# {key.env}={key.default}")
        lines.append("")
    return "\n".join(lines)


def settings_table(keys: Sequence[Key]) -> str:
    """The README's settings table (Markdown)."""
    rows = [TABLE_HEADER, "|---|---|---|"]
    for key in keys:
        alias = f" (alias `{'`, `'.join(key.aliases)}`)" if key.aliases else ""
        default = f"`{key.default}`" if key.default else "*(empty)*"
        rows.append(f"| `{key.env}`{alias} | {default} | {key.doc} |")
    return "\n".join(rows)


def rewrite(root: Path, keys: Sequence[Key]) -> None:
    """Write .env.example and replace the README's table under `root`."""
    (root / ".env.example").write_text(env_example(keys))
    readme = (root / "README.md").read_text()
    start = readme.index(TABLE_HEADER)
    end = readme.index("\n\n", start)
    (root / "README.md").write_text(readme[:start] + settings_table(keys) + readme[end:])
