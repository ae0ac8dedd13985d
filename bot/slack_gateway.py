"""Rein's outbound Slack calls: thin wrappers over slack_sdk that name each failure plainly.
Retries of 429 and 5xx happen inside slack_sdk's retry handlers (see `make_client`). A call
that times out is not tried again (Slack may have done it: a second channel, a second
message); like a connection that failed for good, it is a SlackProblem `unreachable`."""

import asyncio
import logging
import time
from collections.abc import Iterable

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.naming import channel_name

logger = logging.getLogger(__name__)

CHANNEL_NAME_ATTEMPTS = 10
SLACK_TIMEOUT_SECONDS = 10.0  # one Web API call, answer included
# slack_sdk retries 500 and 503; a 502 from the gateway in front of Slack passes too. Not 504:
# like a timeout, it may come after Slack did the work.
RETRIED_STATUSES = frozenset({500, 502, 503})
GROUP_CACHE_SECONDS = 60.0
INVITE_BATCH = 100  # conversations.invite takes at most 100 user ids
UPLOAD_ATTEMPTS = 3  # the POST of a file's bytes to its upload URL

# What a responder should read when Slack refuses, by Slack's error code.
_EXPLANATIONS = {
    "restricted_action": "a workspace setting stops Rein from creating channels",
    "missing_scope": "the app lacks a permission: reinstall it from manifest.yml",
    "not_in_channel": "Rein is not a member of that channel: invite it with /invite @Rein",
    "channel_not_found": "Slack does not know that channel, or Rein cannot see it",
    "is_archived": "that channel is archived",
    "ratelimited": "Slack is rate-limiting Rein; it retried and gave up",
    "invalid_auth": "Slack rejected Rein's token",
    "expired_trigger_id": "the form took too long to open; try again",
    "unreachable": "Slack could not be reached or did not answer in time",
    "name_taken": "every name Rein tried is taken",
}
# What a Slack call can fail with: Slack's refusals, and the connection's own failures
# (slack_sdk lets aiohttp's errors and timeouts through untouched).
SLACK_FAILURES = (SlackClientError, aiohttp.ClientError, TimeoutError)


class SlackProblem(Exception):
    """A Slack call that failed for good; `str()` is fit to show a responder."""

    def __init__(self, action: str, code: str) -> None:
        self.action = action
        self.code = code
        why = _EXPLANATIONS.get(code, f"Slack answered `{code}`")
        if code in {f"http_{status}" for status in RETRIED_STATUSES}:
            why = f"Slack kept answering with a server error (HTTP {code[5:]}) as Rein retried"
        super().__init__(f"Could not {action}: {why}.")


class _ServerErrorRetryHandler(AsyncServerErrorRetryHandler):
    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code in RETRIED_STATUSES


def make_client(
    token: str,
    base_url: str,
    session: aiohttp.ClientSession | None = None,
    timeout: float = SLACK_TIMEOUT_SECONDS,
) -> AsyncWebClient:
    """With `session`, every call reuses its connections instead of opening one per call;
    slack_sdk then ignores `timeout`, and the session's own ClientTimeout applies."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        session=session,
        timeout=timeout,  # type: ignore[arg-type]  # aiohttp takes seconds as a float
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            _ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def _code(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        data = exc.response.data
        # A 5xx from Slack (or a proxy) may carry an HTML page rather than JSON.
        error = data.get("error") if isinstance(data, dict) else None
        return str(error or f"http_{exc.response.status_code}")
    return "unreachable"


class SlackGateway:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._bot_user_id: str | None = None
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    async def _call(self, action: str, method: str, **args: object) -> dict:
        try:
            payload = {key: value for key, value in args.items() if value is not None}
            # slack_sdk's typed method knows each method's encoding (JSON, form or GET).
            call = getattr(self.client, method.replace(".", "_"))
            response = await call(**payload)
        except SLACK_FAILURES as exc:
            code = _code(exc)
            logger.warning("Slack %s failed: %s", method, code)
            raise SlackProblem(action, code) from exc
        return response.data  # type: ignore[return-value]

    async def identity(self) -> dict:
        """auth.test: who Rein is in this workspace."""
        data = await self._call("check Rein's bot token", "auth.test")
        self._bot_user_id = str(data["user_id"])
        return data

    async def bot_user_id(self) -> str:
        if self._bot_user_id is None:
            await self.identity()
        assert self._bot_user_id is not None
        return self._bot_user_id

    async def create_incident_channel(self, number: int, title: str) -> tuple[str, str]:
        """A fresh public channel; on `name_taken` the next name gets a suffix."""
        for attempt in range(1, CHANNEL_NAME_ATTEMPTS + 1):
            name = channel_name(number, title, attempt)
            try:
                data = await self._call(
                    f"create the incident channel #{name}", "conversations.create", name=name
                )
            except SlackProblem as problem:
                if problem.code == "name_taken":
                    continue
                raise
            return str(data["channel"]["id"]), str(data["channel"]["name"])
        raise SlackProblem("create the incident channel", "name_taken")

    async def set_topic(self, channel: str, topic: str) -> None:
        await self._call(
            "set the channel topic", "conversations.setTopic", channel=channel, topic=topic
        )

    async def invite(self, channel: str, users: Iterable[str]) -> None:
        me = await self.bot_user_id()
        wanted = sorted({u for u in users if u and u != me})
        for start in range(0, len(wanted), INVITE_BATCH):
            batch = wanted[start : start + INVITE_BATCH]
            try:
                await self._call(
                    "invite the responders",
                    "conversations.invite",
                    channel=channel,
                    users=",".join(batch),
                    force=True,
                )
            except SlackProblem as problem:
                if problem.code != "already_in_channel":
                    raise

    async def expand_approvers(self, ids: Iterable[str]) -> set[str]:
        """User ids, with user groups (S…) replaced by their members (cached for a minute)."""
        users: set[str] = set()
        for item in ids:
            if item.startswith("S"):
                users |= await self._group_members(item)
            else:
                users.add(item)
        return users

    async def _group_members(self, group: str) -> frozenset[str]:
        cached = self._groups.get(group)
        if cached and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1]
        data = await self._call(
            f"read the members of user group {group}", "usergroups.users.list", usergroup=group
        )
        members = frozenset(str(u) for u in data.get("users", []))
        self._groups[group] = (time.monotonic(), members)
        return members

    async def post(self, channel: str, text: str, blocks: list[dict] | None = None) -> str:
        data = await self._call(
            "post the message", "chat.postMessage", channel=channel, text=text, blocks=blocks
        )
        return str(data["ts"])

    async def reply(
        self, channel: str, thread_ts: str, text: str, blocks: list[dict] | None = None
    ) -> str:
        """A reply in the thread of message `thread_ts` (not broadcast to the channel)."""
        data = await self._call(
            "reply in the thread",
            "chat.postMessage",
            channel=channel,
            thread_ts=thread_ts,
            text=text,
            blocks=blocks,
        )
        return str(data["ts"])

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict]) -> None:
        await self._call(
            "update the message", "chat.update", channel=channel, ts=ts, text=text, blocks=blocks
        )

    async def pin(self, channel: str, ts: str) -> None:
        try:
            await self._call("pin the card", "pins.add", channel=channel, timestamp=ts)
        except SlackProblem as problem:
            if problem.code != "already_pinned":
                raise

    async def open_view(self, trigger_id: str, view: dict) -> None:
        await self._call("open the form", "views.open", trigger_id=trigger_id, view=view)

    async def update_view(self, view_id: str, view: dict, view_hash: str | None) -> None:
        args: dict[str, object] = {"view_id": view_id, "view": view}
        if view_hash:
            args["hash"] = view_hash
        await self._call("update the form", "views.update", **args)

    async def upload_file(
        self,
        channel: str,
        *,
        filename: str,
        title: str,
        content: bytes,
        comment: str | None = None,
    ) -> str:
        """Share `content` in `channel` as a file through Slack's external upload: ask
        files.getUploadURLExternal for an upload URL (name and length), POST the bytes there,
        then files.completeUploadExternal shares the file. Returns the file id."""
        ticket = await self._call(
            "upload the file", "files.getUploadURLExternal", filename=filename, length=len(content)
        )
        file_id, upload_url = str(ticket["file_id"]), str(ticket["upload_url"])
        await self._send_upload(upload_url, content)
        await self._call(
            "share the file in the channel",
            "files.completeUploadExternal",
            files=[{"id": file_id, "title": title}],
            channel_id=channel,
            initial_comment=comment,
        )
        return file_id

    async def _send_upload(self, url: str, content: bytes) -> None:
        """The bytes, raw, to the upload URL Slack gave (no token: the URL is the ticket);
        connection errors and 5xx are tried again."""
        session = self.client.session or aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.client.timeout)
        code = "unreachable"
        try:
            for attempt in range(UPLOAD_ATTEMPTS):
                if attempt:
                    await asyncio.sleep(attempt)
                try:
                    async with session.post(url, data=content, timeout=timeout) as response:
                        if response.status == 200:
                            return
                        code = f"http_{response.status}"
                        if response.status < 500:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    code = "unreachable"
        finally:
            if session is not self.client.session:
                await session.close()
        logger.warning("Slack file upload failed: %s", code)
        raise SlackProblem("upload the file", code)

    async def tell(self, user: str, text: str, channel: str | None = None) -> None:
        """A private answer: ephemeral where the user acted, else a direct message."""
        if channel:
            try:
                await self._call(
                    "answer privately", "chat.postEphemeral", channel=channel, user=user, text=text
                )
                return
            except SlackProblem:
                logger.info("ephemeral answer failed; sending a direct message instead")
        await self._call("send a direct message", "chat.postMessage", channel=user, text=text)
