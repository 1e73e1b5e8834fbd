"""Settings we were given but do not act on, one line each: the Cybertemp
server's settings we do not implement, a RUST_LOG filter we cannot read, and
names that look like ours but are not (a typo such as SMTP_PORT for
SMTP_RECEIVE_PORT), with the closest setting.

A name "looks like ours" when it is close to one of ours or begins as at
least two of ours do (SMTP_, MAX_, API_, ...): the environment holds many
other programs' variables, and those are left alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

from .config import KEYS, read_sources, translate_alias

# Settings of the Cybertemp server we do not implement: named at start-up.
UNSUPPORTED = {
    "ENCRYPTION_MASTER_KEY_V1": (
        "message bodies are stored unencrypted (encrypted = false); "
        "Cybertemp's body encryption is not implemented"
    ),
    "TOKIO_WORKER_THREADS": "use WORKERS for processes; there are no worker threads to size",
}
OURS = tuple(name for key in KEYS for name in (key.env, *key.aliases))
KNOWN = frozenset(OURS) | frozenset(UNSUPPORTED)
NEAR = 0.85  # difflib ratio from which a name is a near miss of one of ours


def _prefixes() -> frozenset[str]:
    heads = [name.split("_")[0] + "_" for name in OURS if "_" in name]
    return frozenset(head for head in heads if heads.count(head) >= 2)


PREFIXES = _prefixes()


def closest(name: str) -> str | None:
    """Our setting `name` was probably meant as, if it looks like one of ours."""
    near = difflib.get_close_matches(name, OURS, n=1, cutoff=NEAR)
    if near:
        return near[0]
    head = name.split("_")[0] + "_"
    if head in PREFIXES:  # the closest of ours that begins the same way
        return difflib.get_close_matches(name, [n for n in OURS if n.startswith(head)], 1, 0)[0]
    return None


def unknown_names(
    env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> list[str]:
    """One line per name that looks like a setting of ours but is not one."""
    env, dotenv = read_sources(env, env_file)
    lines = []
    for where, source in (("the environment", env), (str(env_file), dotenv)):
        for name in sorted(source):
            meant = None if name in KNOWN else closest(name)
            if meant:
                lines.append(
                    f"{name} (in {where}) is not a setting and is ignored: did you mean {meant}?"
                )
    return lines


def warnings(
    env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> list[str]:
    """One line per setting we were given but do not act on (not typos: unknown_names)."""
    env, dotenv = read_sources(env, env_file)
    lines = []
    for name, consequence in UNSUPPORTED.items():
        if env.get(name) or dotenv.get(name):
            lines.append(f"{name} is set but not supported: {consequence}")
    for source in (env, dotenv):
        rust_log = source.get("RUST_LOG")
        if rust_log and translate_alias("RUST_LOG", rust_log) is None:
            lines.append(
                f"RUST_LOG={rust_log!r} is not a plain level (trace, debug, info, warn, error): "
                "ignored; set LOG_LEVEL"
            )
            break
    return lines
