"""Benchmarks: our service against an aiosmtpd null sink in the same run."""
