"""Logging set-up with a filter that keeps tokens and secrets out of every log line."""

import logging
import re
from collections.abc import Iterable

_SLACK_TOKEN = re.compile(r"\b(xox[abposr]|xapp)-[A-Za-z0-9-]+")
REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def _clean(self, text: str) -> str:
        text = _SLACK_TOKEN.sub(REDACTED, text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._clean(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        if record.stack_info:  # `stack_info=True`: the source lines of every frame
            record.stack_info = self._clean(record.stack_info)
        return True


def configure_logging(secrets: Iterable[str] = (), level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # slack_sdk logs request headers at DEBUG; keep it above that whatever the root level.
    logging.getLogger("slack_sdk").setLevel(max(level, logging.INFO))
    # APScheduler logs every job added and run at INFO: three lines per reminder, thousands
    # at start-up. Rein logs what matters about its jobs itself.
    logging.getLogger("apscheduler").setLevel(max(level, logging.WARNING))
