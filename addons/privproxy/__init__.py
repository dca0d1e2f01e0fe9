"""privproxy: a privacy filter reverse proxy built from mitmproxy addons."""

__version__ = "0.1.0"
