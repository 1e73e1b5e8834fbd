"""Every SMTP reply we send on purpose, as one named constant each, and the
rewrites of aiosmtpd's own texts.

Texts marked in DESIGN.md are interfaces: websites and tests match them.
With ENHANCEDSTATUSCODES advertised, every error reply carries an enhanced
status code (RFC 2034); `with_enhanced_code` adds the usual one to aiosmtpd's
texts that lack it.
"""

from __future__ import annotations

import re

QUEUED = "250 2.0.0 OK: queued as {id}"
SENDER_OK = "250 2.1.0 OK"
RECIPIENT_OK = "250 2.1.5 OK"
DOMAIN_NOT_ALLOWED = "550 5.7.1 Domain not allowed"
SENDER_BANNED = "550 5.7.1 Sender banned"
DOMAIN_BANNED = "550 5.7.1 Domain banned"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
DMARC_REJECT = "550 5.7.1 Rejected by the DMARC policy of {domain}"
MESSAGE_TOO_BIG = "552 5.3.4 Message too big"
QUEUE_FULL = "451 4.3.0 Mail queue full - please retry later"
STORE_FULL = "452 4.3.1 Mail store full - please retry later"
LISTS_NOT_LOADED = "451 4.3.0 Domain and ban lists not loaded yet - please retry later"
BUSY_RECEIVING = "452 4.3.1 Too much mail being received at once - please retry later"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
TOO_MANY_FROM_IP = "421 4.7.0 Too many connections from your address, try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
LINE_TOO_LONG = "500 5.5.2 Line too long"
DATA_TIMEOUT = "421 4.4.2 DATA timeout, closing connection"
SESSION_TIMEOUT = "421 4.4.2 Session time limit reached, closing connection"
TOO_MANY_ERRORS = "421 4.7.0 Too many errors, closing connection"
TOO_MANY_UNKNOWN = "421 4.7.0 Too many unrecognized commands, closing connection"
BAD_ADDRESS_SYNTAX = "501 5.1.3 Bad address syntax"
INTERNAL_ERROR = "451 4.3.0 Internal error - please retry later"
BAD_SENDER_SYNTAX = "501 5.1.7 Bad sender address syntax"
BAD_RECIPIENT_SYNTAX = "501 5.1.3 Bad recipient address syntax"
ADDRESS_TOO_LONG = "501 5.5.4 Address too long"
BAD_HELO = "501 5.5.4 Invalid {verb} name"
NEED_RCPT = "503 5.5.1 Error: need RCPT command"
DATA_SYNTAX = "501 5.5.4 Syntax: DATA"
START_DATA = "354 End data with <CR><LF>.<CR><LF>"

# Inbound defence (README "Defence").
PAUSED = "421 4.3.2 Not receiving mail now: {reason}"
PAUSED_NO_REASON = "paused by the operator, try again later"
DNSBL_LISTED = "554 5.7.1 Service unavailable; client [{ip}] blocked using {zones}"
RATE_LIMITED = "451 4.7.1 Too much mail, try again later"
MAILBOX_FLOODED = "452 4.2.2 Mailbox receiving too much mail, try again later"
ERRORS_BLOCKED = "421 4.7.0 Too many errors from your address, try again later"
RULE_REJECT = "550 5.7.1 Message refused by policy"
DANGEROUS_CONTENT = "554 5.7.1 Message refused: {reason}"
SPAM_REJECT = "554 5.7.1 Message refused as spam (score {score:g})"

# aiosmtpd's own texts for limits we also hold, reworded to DESIGN.md's.
AIOSMTPD_REPLIES = {
    b"500 Command line too long": LINE_TOO_LONG.encode(),
    b"552 Error: message size exceeds fixed maximum message size": MESSAGE_TOO_BIG.encode(),
    b"553 5.1.3 Error: malformed address": BAD_ADDRESS_SYNTAX.encode(),
    b"502 5.5.1 Too many unrecognized commands, goodbye.": TOO_MANY_UNKNOWN.encode(),
}

ENHANCED = re.compile(rb"^\d{3}[ -]\d\.\d{1,3}\.\d{1,3}( |$)")
# The usual enhanced code for each reply code (RFC 3463), for texts without one.
DEFAULT_ENHANCED = {
    b"421": b"4.3.0",
    b"451": b"4.3.0",
    b"452": b"4.3.1",
    b"454": b"4.7.0",
    b"500": b"5.5.2",
    b"501": b"5.5.4",
    b"502": b"5.5.1",
    b"503": b"5.5.1",
    b"504": b"5.5.4",
    b"530": b"5.7.0",
    b"550": b"5.0.0",
    b"552": b"5.3.4",
    b"553": b"5.1.3",
    b"554": b"5.0.0",
    b"555": b"5.5.4",
}


def with_enhanced_code(status: bytes) -> bytes:
    """`status` in our words, with an enhanced code if it is an error without one."""
    status = AIOSMTPD_REPLIES.get(status, status)
    if status[:1] not in (b"4", b"5") or ENHANCED.match(status):
        return status
    code = status[:3]
    default = DEFAULT_ENHANCED.get(code, code[:1] + b".0.0")
    if len(status) > 4:
        return code + status[3:4] + default + b" " + status[4:]
    return code + b" " + default
