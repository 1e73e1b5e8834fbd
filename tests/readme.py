"""The README's shell blocks, as tests run them (so a test follows the README,
not a copy of it), and a fresh clone of this checkout to run them in."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

from .helpers import ROOT


def section(title: str) -> str:
    """The text of README.md's `## title` section."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(text: str) -> list[str]:
    """The indented (4-space) code blocks of `text`, dedented."""
    found = (block.strip("\n") for block in re.findall(r"(?:^(?: {4}.*|)\n)+", text, re.M))
    return [textwrap.dedent(block) + "\n" for block in found if block.startswith("    ")]


def block_starting(title: str, first_line: str) -> str:
    """The block of section `title` whose first line starts with `first_line`."""
    [block] = [b for b in blocks(section(title)) if b.startswith(first_line)]
    return block


def clone_source(directory: Path) -> Path:
    """A bare copy of this checkout's committed HEAD, on a branch `main` (a
    clone of it can `git pull`, whatever state this checkout is in). Changes
    not committed are not in it."""
    bare = directory / "repository.git"
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--bare", str(ROOT), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "branch", "-q", "-f", "main", head], check=True)
    subprocess.run(["git", "-C", str(bare), "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    return bare


def fresh_clone(directory: Path) -> Path:
    """`git clone` of this checkout's committed HEAD into directory/clone."""
    clone = directory / "clone"
    subprocess.run(["git", "clone", "-q", str(clone_source(directory)), str(clone)], check=True)
    return clone


def processes_under(path: Path) -> list[str]:
    """Live processes whose command line or executable lies under `path`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                continue  # ended, waiting to be reaped
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in command:
            found.append(f"{entry.name}: {command}")
    return found
