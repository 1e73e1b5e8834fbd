"""MIME parameters split in linear time, for every parse of ours (the SMTP
service's parse stage and the API's MIME work import this module).

The standard library splits a Content-Type or Content-Disposition value
into its parameters (email.message._parseparam, used by get_param,
get_filename, get_boundary, get_content_charset) in quadratic time: it
copies the rest of the value after each parameter and, inside an open
quote, counts the quotes from the start again at each `;`. A part header
of `a="` then 250,000 `;` took ten minutes (CPython gh-136063), and part
headers sit in the body, past what parse.parses_slowly looks at.

Here a parameter's end is found by one regular expression (C speed, no
backtracking), with the standard library's result, and at most PARAMS_MAX
parameters of a value are read: real ones have a few (a long file name in
RFC 2231 sections a few dozen), each is Python work at every get_param, and
the raw message is kept whole.
"""

from __future__ import annotations

import email.message
import re
from typing import Any

PARAMS_MAX = 256  # parameters read from one header value

# One parameter: up to the first `;` outside a quoted string. As in the
# standard library, a quote after a backslash neither opens nor closes one,
# and a quote never closed runs to the end of the value.
_PARAM = re.compile(r'(?:\\"|[^;"]|"(?:\\"|[^"])*+"?)*+')


def parseparam(value: Any) -> list[str]:
    """email.message._parseparam's parameters of `value` (the first PARAMS_MAX)."""
    s = str(value)
    params: list[str] = []
    start = 0
    while len(params) < PARAMS_MAX:
        match = _PARAM.match(s, start)  # never None: the pattern matches ""
        end = match.end() if match else len(s)
        param = s[start:end]
        if "=" in param:
            name, _, rest = param.partition("=")
            param = name.strip().lower() + "=" + rest.strip()
        params.append(param.strip())
        if end >= len(s):
            break
        start = end + 1  # past the `;`
    return params


email.message._parseparam = parseparam  # type: ignore[attr-defined]
