"""Every SMTP reply we send on purpose, as one named constant each.

Texts marked in DESIGN.md are interfaces: websites and tests match them.
"""

OK = "250 2.0.0 OK"
QUEUED = "250 2.0.0 OK: queued as {id}"
DOMAIN_NOT_ALLOWED = "550 5.7.1 Domain not allowed"
SENDER_BANNED = "550 5.7.1 Sender banned"
DOMAIN_BANNED = "550 5.7.1 Domain banned"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
MESSAGE_TOO_BIG = "552 5.3.4 Message too big"
QUEUE_FULL = "451 4.3.0 Mail queue full - please retry later"
LISTS_NOT_LOADED = "451 4.3.0 Mail queue full - please retry later"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
TOO_MANY_FROM_IP = "421 4.7.0 Too many connections from your address, try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
LINE_TOO_LONG = "500 5.5.2 Line too long"
DATA_TIMEOUT = "421 4.4.2 DATA timeout, closing connection"
INTERNAL_ERROR = "451 4.3.0 Internal error - please retry later"
BAD_SENDER_SYNTAX = "501 5.1.7 Bad sender address syntax"
BAD_RECIPIENT_SYNTAX = "501 5.1.3 Bad recipient address syntax"
