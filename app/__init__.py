"""Receive-only SMTP service for temporary-mailbox sites."""

__version__ = "0.1.0"
