"""Build the labelled set of app/codes.py: `python tests/data/codes/build.py`.

Each *.json file here holds messages rendered from the real e-mail templates
of one open-source product (or, for handwritten.json, written by us), with
the code(s) and the verification link we injected as labels. Templates are
read from git snapshots of the products' repositories:

    $CODES_MIRRORS/<owner>+<name>/repo   a bare git directory (default /work/.mirror,
                                         the layout of the team's `fetch` tool;
                                         `git clone --bare URL` gives the same)
    $CODES_SOURCES/<owner>+<name>/<path> a plain file, for repositories too big
                                         to clone whole (keycloak: the files listed
                                         in sources_identity.KEYCLOAK, sparse checkout)

The repositories and commits used are in each file's "source" header. The
output is deterministic (seeded), so a rebuild from the same commits gives
the same files.
"""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIRRORS = Path(os.environ.get("CODES_MIRRORS", "/work/.mirror"))
SOURCES = Path(os.environ.get("CODES_SOURCES", "/tmp/codes-sources"))


@dataclass
class Repo:
    """One product repository: where its files come from and under what licence."""

    name: str  # owner/name on GitHub
    licence: str
    commit: str = ""
    paths: set[str] = field(default_factory=set)

    def _git_dir(self) -> Path:
        return MIRRORS / self.name.replace("/", "+") / "repo"

    def read(self, path: str) -> str:
        self.paths.add(path)
        git_dir = self._git_dir()
        if git_dir.is_dir():
            if not self.commit:
                self.commit = subprocess.run(
                    ["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
            blob = subprocess.run(
                ["git", "--git-dir", str(git_dir), "show", f"{self.commit}:{path}"],
                capture_output=True,
                check=True,
            ).stdout
            return blob.decode("utf-8-sig")
        plain = SOURCES / self.name.replace("/", "+") / path
        return plain.read_text(encoding="utf-8-sig")

    def header(self) -> dict[str, object]:
        return {
            "repository": f"https://github.com/{self.name}",
            "commit": self.commit,
            "licence": self.licence,
        }


class Values:
    """Seeded realistic values: the labels (codes, tokens) and the filler
    around them (names, dates, amounts, addresses)."""

    FIRST = ["Alex", "Maria", "Jonas", "Chloé", "Diego", "Ana", "Luca", "Sanne", "Ivan", "Mei"]
    LAST = ["Morgan", "Keller", "Dubois", "García", "Silva", "Rossi", "de Vries", "Petrov"]

    def __init__(self, seed: str) -> None:
        self.rng = random.Random(seed)

    def digits(self, n: int = 6) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(n))

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def grouped(self, alphabet: str, sizes: Iterable[int], sep: str = "-") -> str:
        return sep.join(self.chars(alphabet, n) for n in sizes)

    def hex(self, n: int = 32) -> str:
        return self.chars("0123456789abcdef", n)

    def urlsafe(self, n: int = 43) -> str:
        return self.chars(string.ascii_letters + string.digits + "-_", n)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def jwt(self) -> str:
        head = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
        return f"{head}.eyJ{self.urlsafe(120)}.{self.urlsafe(43)}"

    def name(self) -> str:
        return f"{self.rng.choice(self.FIRST)} {self.rng.choice(self.LAST)}"

    def username(self) -> str:
        return self.rng.choice(self.FIRST).lower() + self.digits(self.rng.choice([0, 2, 3]))

    def email(self) -> str:
        return f"{self.username()}@{self.rng.choice(['example.com', 'mail.test', 'inbox.example'])}"

    def ip(self) -> str:
        return ".".join(str(self.rng.randint(1, 254)) for _ in range(4))

    def date(self) -> str:
        y, m, d = self.rng.randint(2024, 2026), self.rng.randint(1, 12), self.rng.randint(1, 28)
        forms = [f"{y}-{m:02}-{d:02}", f"{d:02}.{m:02}.{y}", f"{m}/{d}/{y}", f"{d}/{m}/{y}"]
        return self.rng.choice(forms)

    def time(self) -> str:
        return f"{self.rng.randint(0, 23):02}:{self.rng.randint(0, 59):02}"

    def amount(self) -> str:
        whole, cents = self.rng.randint(3, 2400), self.rng.randint(0, 99)
        return self.rng.choice(
            [f"${whole}.{cents:02}", f"{whole},{cents:02} €", f"£{whole}.{cents:02}"]
        )

    def pick(self, items: list):  # type: ignore[no-untyped-def]
        return self.rng.choice(items)


# The ten languages the extractor must read, in this order in locales().
LANGS = ("en", "de", "fr", "es", "pt", "it", "nl", "ru", "zh", "ja")


def locales(names: str, **more: str) -> dict[str, str]:
    """Our language codes -> a product's locale names, given in LANGS order
    ("-" where it has none), plus more languages by keyword."""
    pairs = zip(LANGS, names.split(), strict=True)
    return {lang: name for lang, name in pairs if name != "-"} | more


def message(
    ident: str,
    path: str | list[str],
    lang: str,
    subject: str,
    text: str,
    html: str,
    codes: Iterable[str] = (),
    link: str | None = None,
) -> dict[str, object]:
    """One labelled message. `codes` as shown to the reader; `link` the
    verification / sign-in / reset / magic link (None when the mail has none)."""
    return {
        "id": ident,
        "template": path,
        "lang": lang,
        "subject": subject.strip(),
        "text": text,
        "html": html,
        "codes": list(codes),
        "verify_link": link,
    }


def write(name: str, source: dict[str, object], messages: list[dict[str, object]]) -> None:
    lines = [json.dumps(m, ensure_ascii=False, sort_keys=True) for m in messages]
    header = json.dumps(source, ensure_ascii=False, sort_keys=True)
    body = '{"source": ' + header + ',\n "messages": [\n' + ",\n".join(lines) + "\n]}\n"
    (HERE / f"{name}.json").write_text(body, encoding="utf-8")


def build(names: list[str]) -> Iterator[str]:
    import handwritten
    import heldout
    import sources_allauth
    import sources_i18n
    import sources_identity
    import sources_shop
    import sources_vaults

    builders = {}
    modules = (sources_identity, sources_allauth, sources_i18n, sources_vaults, sources_shop)
    for module in (*modules, handwritten, heldout):
        builders.update(module.BUILDERS)
    for name, builder in builders.items():
        if names and name not in names:
            continue
        source, messages = builder()
        write(name, source, messages)
        yield f"{name}: {len(messages)} messages"


if __name__ == "__main__":
    for line in build(sys.argv[1:]):
        print(line)
