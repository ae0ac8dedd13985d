"""Slack channel names for incidents: `inc-<n>-<slug>`, valid and at most 80 characters."""

import re
import unicodedata

CHANNEL_NAME_MAX = 80
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_ALLOWED.sub("-", ascii_text.lower()).strip("-")


def channel_name(number: int, title: str, attempt: int = 1) -> str:
    """Attempt 2, 3… add `-2`, `-3`… for when Slack answers `name_taken`."""
    prefix = f"inc-{number}"
    suffix = f"-{attempt}" if attempt > 1 else ""
    room = CHANNEL_NAME_MAX - len(prefix) - len(suffix) - 1
    slug = slugify(title)[:room].rstrip("-")
    return f"{prefix}-{slug}{suffix}" if slug else f"{prefix}{suffix}"
