"""Slack channel names for incidents: `inc-<n>-<slug>`, valid and at most 80 characters."""

import re
import unicodedata

CHANNEL_NAME_MAX = 80
MAX_ATTEMPT_SUFFIX = len("-99")
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_ALLOWED.sub("-", ascii_text.lower()).strip("-")


def channel_name(number: int, title: str, attempt: int = 1) -> str:
    """Attempt 2, 3… add `-2`, `-3`… for when Slack answers `name_taken`."""
    prefix = f"inc-{number}"
    suffix = f"-{attempt}" if attempt > 1 else ""
    # The slug is cut the same way for every attempt (room kept for the longest suffix), so
    # attempts differ only by their suffix and never repeat a name.
    room = CHANNEL_NAME_MAX - len(prefix) - max(len(suffix), MAX_ATTEMPT_SUFFIX) - 1
    slug = slugify(title)[:room].rstrip("-")
    return f"{prefix}-{slug}{suffix}" if slug else f"{prefix}{suffix}"
