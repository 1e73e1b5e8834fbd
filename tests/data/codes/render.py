"""Rendering helpers for build.py: a tolerant mini template engine and an
HTML-to-text converter, enough to turn the products' e-mail templates into
the messages their mailers send.

The engine understands the parts of Go templates, Handlebars, Django/Twig and
"{placeholder}" bundles the templates we read use: variables (dotted paths,
filters and helpers reduced to their value), if/else/end, range/each/for,
define/template, layouts (Handlebars `{{#>Layout}}`), partials and a
translation hook. Unknown tags render as nothing.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from typing import Any

TAG = re.compile(r"\{\{\{?~?-?\s*(.*?)\s*-?~?\}?\}\}|\{%-?\s*(.*?)\s*-?%\}", re.S)
IDENT = re.compile(r"[A-Za-z_@][\w.]*")

Translate = Callable[[str], str]
Partial = Callable[[str], str]


def _lookup(ctx: Mapping[str, Any], path: str) -> Any:
    """A dotted path from the context; the last segment alone as a fallback."""
    path = path.lstrip(".").strip()
    if path in ("", "this"):
        return ctx.get(".", "")
    if path in ctx:
        return ctx[path]
    value: Any = ctx
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            value = None
            break
    if value is not None:
        return value
    last = path.rsplit(".", 1)[-1]
    return ctx.get(last, ctx.get(last.lower()))


def _expression(ctx: Mapping[str, Any], expr: str, translate: Translate | None) -> str:
    """The value of `{{ expr }}`: a variable, a quoted literal (translated when
    piped to a trans filter), or a helper call whose first known argument wins."""
    expr = expr.strip()
    if expr in (".", "this"):
        return str(ctx.get(".", ""))
    literal = re.match(r"""^(['"])(.*?)\1\s*\|\s*trans""", expr)
    if literal and translate is not None:
        return translate(literal.group(2))
    quoted_t = re.match(r"""^t\s+(['"])(.*?)\1""", expr)
    if quoted_t and translate is not None:
        return render(translate(quoted_t.group(2)), ctx, translate=translate)
    expr = expr.split("|", 1)[0].strip()
    for name in IDENT.findall(expr):
        value = _lookup(ctx, name)
        if value is not None:
            return str(value)
    return ""


def _truthy(ctx: Mapping[str, Any], cond: str) -> bool:
    cond = cond.strip()
    negate = cond.startswith(("not ", "!"))
    cond = cond.removeprefix("not ").removeprefix("!").strip()
    names = [n for n in IDENT.findall(cond) if n not in ("and", "or", "eq", "ne", "is", "null")]
    value = any(bool(_lookup(ctx, n)) for n in names)
    return value != negate


def _tokens(template: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    for m in TAG.finditer(template):
        out.append(("text", template[pos : m.start()]))
        out.append(("tag", (m.group(1) if m.group(1) is not None else m.group(2)) or ""))
        pos = m.end()
    out.append(("text", template[pos:]))
    return out


_OPEN = re.compile(r"^(#?if|#unless|range|#each|for|with|#with|define|block|#>|set\s+\w+\s*$)")
_CLOSE = re.compile(r"^(end|endif|endfor|endwith|endset|endblock|/\w+)\b")


def _block(tokens: list[tuple[str, str]], i: int) -> tuple[list, list, int]:
    """The tokens of the block opened just before i, split at its `else`;
    the index after its closing tag."""
    depth, main, other, current = 0, [], [], None
    current = main
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "tag":
            if _OPEN.match(value):
                depth += 1
            elif _CLOSE.match(value):
                if depth == 0:
                    return main, other, i + 1
                depth -= 1
            elif value.startswith("else") and depth == 0:
                current = other
                i += 1
                continue
        current.append(tokens[i])
        i += 1
    return main, other, i


def _run(
    tokens: list[tuple[str, str]],
    ctx: dict[str, Any],
    translate: Translate | None,
    partial: Partial | None,
) -> str:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "text":
            out.append(value)
            continue
        if _OPEN.match(value):
            main, other, i = _block(tokens, i)
            out.append(_open(value, main, other, ctx, translate, partial))
        elif value.startswith(("template ", ">")):
            out.append(_include(value, ctx, translate, partial))
        elif not re.match(r"^(load|extends|autoescape|end|comment|else|set |!)|.* as \w+$", value):
            out.append(_expression(ctx, value, translate))
    return "".join(out)


def _open(value, main, other, ctx, translate, partial) -> str:  # type: ignore[no-untyped-def]
    head, _, arg = value.partition(" ")
    head = head.lstrip("#")
    if value.startswith("#>"):
        body = _run(main, ctx, translate, partial)
        layout = partial(value[2:].strip()) if partial else "{{>@partial-block}}"
        return render(layout, {**ctx, "@partial-block": body}, translate, partial)
    if head in ("if", "unless"):
        chosen = main if _truthy(ctx, arg) == (head == "if") else other
        return _run(chosen, ctx, translate, partial)
    if head in ("range", "each", "for"):
        name = arg.split(" in ")[-1].strip()
        items = _lookup(ctx, name) or []
        loop_var = arg.split(" in ")[0].strip() if " in " in arg else "this"
        parts = []
        for item in items:
            scope = {**ctx, ".": item, loop_var: item}
            if isinstance(item, Mapping):
                scope.update(item)
            parts.append(_run(main, scope, translate, partial))
        return "".join(parts)
    if head.startswith("set"):
        ctx[arg.strip() or value.split()[1]] = _run(main, ctx, translate, partial)
        return ""
    return _run(main, ctx, translate, partial)  # with, block


def _include(value, ctx, translate, partial) -> str:  # type: ignore[no-untyped-def]
    if value.startswith("template "):
        m = re.match(r'template\s+"([^"]+)"\s*(.*)', value)
        if not m:
            return ""
        block = ctx.get("@defines", {}).get(m.group(1), [])
        arg = m.group(2).strip()
        scope = dict(ctx)
        if arg and arg != ".":
            scope["."] = _lookup(ctx, arg)
        return _run(block, scope, translate, partial)
    name = value[1:].strip()
    if name == "@partial-block":
        return str(ctx.get("@partial-block", ""))
    return render(partial(name), ctx, translate, partial) if partial else ""


def render(
    template: str,
    values: Mapping[str, Any],
    translate: Translate | None = None,
    partial: Partial | None = None,
) -> str:
    """`template` with its tags evaluated against `values`."""
    ctx = dict(values)
    ctx["@defines"] = dict(ctx.get("@defines", {}))
    # Go's {{define}} blocks may come after their use: collect them first.
    tokens, i, rest = _tokens(template), 0, []
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "tag" and value.startswith("define "):
            main, _, i = _block(tokens, i)
            ctx["@defines"][value[7:].strip().strip('"')] = main
        else:
            rest.append((kind, value))
    return _run(rest, ctx, translate, partial)


def fill(template: str, values: Mapping[str, Any], pattern: str = r"\{(\w+)\}") -> str:
    """`{name}` (or the given pattern's group 1) replaced by its value; unknown kept."""
    return re.sub(pattern, lambda m: str(values.get(m.group(1), m.group(0))), template)


_BLOCK_END = re.compile(
    r"</(p|div|tr|h[1-6]|li|table|ul|ol|blockquote|pre)\s*>|<br\s*/?>|<hr[^>]*>", re.I
)
_DROP = re.compile(r"<(style|script|head|title)\b.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_ANCHOR = re.compile(r"<a\b[^>]*?href\s*=\s*([\"'])(.*?)\1[^>]*>(.*?)</a\s*>", re.I | re.S)


def html_to_text(markup: str, links: str = "inline") -> str:
    """A text part as mailers derive it from HTML. `links`: "inline" writes
    `text (url)`, "angle" `text <url>`, "footnote" `text [1]` plus a list of
    `[1]: url` at the end (html2text, lynx), "bare" the text only."""
    markup = _DROP.sub("", markup)
    notes: list[str] = []

    def anchor(m: re.Match[str]) -> str:
        url, text = html.unescape(m.group(2)), re.sub(r"<[^>]+>", "", m.group(3)).strip()
        if links == "bare" or not url.startswith("http"):
            return text
        if text == url or not text:
            return url
        if links == "footnote":
            notes.append(url)
            return f"{text} [{len(notes)}]"
        return f"{text} <{url}>" if links == "angle" else f"{text} ({url})"

    markup = _ANCHOR.sub(anchor, markup)
    markup = _BLOCK_END.sub("\n", markup)
    text = html.unescape(re.sub(r"<[^>]+>", "", markup))
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if notes:
        text += "\n\n" + "\n".join(f"[{n}]: {url}" for n, url in enumerate(notes, 1))
    return text + "\n"


def text_to_html(text: str) -> str:
    """A minimal HTML part for a text template (paragraphs, linked URLs)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    out = []
    for p in paragraphs:
        p = html.escape(p, quote=False)
        p = re.sub(r"(https?://[^\s<]+)", r'<a href="\1">\1</a>', p).replace("\n", "<br>\n")
        out.append(f"<p>{p}</p>")
    return "<html><body>\n" + "\n".join(out) + "\n</body></html>\n"
