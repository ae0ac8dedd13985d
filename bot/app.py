"""The one place that wires Rein together: configuration, policy, database, Slack, HTTP."""

import asyncio
import gc
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.autonomy import AutonomyBoard
from bot.clock import Clock, utc_now
from bot.config import ConfigError, Settings
from bot.context import Rein
from bot.debounce import Debouncer
from bot.domain.containment import DELIVERY_TIMEOUT, RETRY_DELAYS
from bot.domain.models import Delivery
from bot.domain.policy import Policy
from bot.foreground import Foreground
from bot.http_api import make_web_app
from bot.killswitch import KillSwitchClient
from bot.policy import load_policy, missing_kill_switch_secrets
from bot.scheduler import DeliveryRunner, ReminderRunner
from bot.services.channel_status import STATUS_DEBOUNCE_SECONDS, post_channel_status
from bot.services.declare import resume_rooms
from bot.services.deliveries import attempt_delivery
from bot.services.reminders import REMINDER_TIMINGS, Reminders, ReminderTimings
from bot.services.surfaces import refresh_surfaces
from bot.slack_gateway import SLACK_TIMEOUT_SECONDS, SlackGateway, make_client
from bot.slack_guard import EventOnce, SignatureGuard
from handlers import register_all
from storage.agents import AgentRepo
from storage.db import Database
from storage.deliveries import DeliveryRepo
from storage.evidence import EvidenceRepo
from storage.incidents import IncidentRepo
from storage.reminders import ReminderRepo
from storage.rollback import RollbackRepo

logger = logging.getLogger(__name__)


def load_checked_policy(settings: Settings, environ: Mapping[str, str]) -> Policy:
    """The policy file, and every kill-switch secret it names present in the environment."""
    policy = load_policy(settings.REIN_POLICY_PATH)
    missing = missing_kill_switch_secrets(policy, environ)
    if missing:
        raise ConfigError(
            "Rein cannot start: kill-switch secrets are missing from the environment:\n"
            + "\n".join(f"- {line}" for line in missing)
            + "\nSee README.md, section 'Configuration'."
        )
    return policy


def make_bolt(settings: Settings, rein: Rein) -> AsyncApp:
    http = settings.slack_mode == "http"
    secret = (
        settings.SLACK_SIGNING_SECRET.get_secret_value() if settings.SLACK_SIGNING_SECRET else ""
    )
    bolt = AsyncApp(
        client=rein.slack.client,
        signing_secret=secret,
        request_verification_enabled=http,
        # Socket Mode acks over the socket; HTTP mode acks in the HTTP response.
        process_before_response=False,
    )
    # Every Events API event runs its listeners once, however often Slack delivers it.
    bolt.use(EventOnce().middleware())
    register_all(bolt, rein)
    return bolt


class AckFirstSocketHandler(AsyncSocketModeHandler):
    """Socket Mode's requests count as awaiting their answer, as HTTP ones do."""

    def __init__(self, app: AsyncApp, app_token: str, foreground: Foreground) -> None:
        super().__init__(app, app_token)
        self.foreground = foreground

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        with self.foreground.answering():
            await super().handle(client, req)


@dataclass
class Runtime:
    settings: Settings
    rein: Rein
    bolt: AsyncApp
    web_app: web.Application
    kill_switch: KillSwitchClient
    deliveries: DeliveryRunner
    reminders: Reminders | None = None
    runner: web.AppRunner | None = None
    socket: AsyncSocketModeHandler | None = None
    sites: list[web.TCPSite] = field(default_factory=list)
    resuming: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        server = self.sites[0]._server  # aiohttp keeps the bound socket here
        return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def start(self) -> None:
        # Deliveries that were pending when Rein stopped resume first.
        self.deliveries.start(await self.rein.deliveries.pending())
        # Reminders too: each live row gets its job; ones due while Rein was down go now.
        if self.reminders is not None:
            await self.reminders.start()
        # Channel status lines that were due when Rein stopped are posted after all.
        self.rein.desk.catch_up(await self.rein.incidents.newest("open"))
        # Rooms whose set-up Rein was stopped in the middle of: read before any request can
        # declare (and set up) another, finished once Slack's requests are answered.
        cut_short = await self.rein.incidents.rooms_pending()
        self.runner = web.AppRunner(self.web_app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.REIN_HOST, self.settings.REIN_PORT)
        await site.start()
        self.sites.append(site)
        logger.info(
            "Rein listening on http://%s:%s (Slack %s mode)",
            self.settings.REIN_HOST,
            self.port,
            self.settings.slack_mode,
        )
        if self.settings.slack_mode == "socket":
            assert self.settings.SLACK_APP_TOKEN is not None
            self.socket = AckFirstSocketHandler(
                self.bolt, self.settings.SLACK_APP_TOKEN.get_secret_value(), self.rein.foreground
            )
            await self.socket.connect_async()
        self.resuming = asyncio.create_task(
            resume_rooms(cut_short, triage_channel=self.rein.triage_channel, **self.rein.room)
        )

    async def stop(self) -> None:
        """Stop taking requests, let acknowledged work finish, then close the database."""
        if self.socket is not None:
            await self.socket.close_async()
        if self.runner is not None:
            await self.runner.cleanup()
        await _drain_listeners(SHUTDOWN_GRACE_SECONDS)
        if self.resuming is not None:
            await asyncio.wait([self.resuming], timeout=SHUTDOWN_GRACE_SECONDS)
            self.resuming.cancel()
            await asyncio.gather(self.resuming, return_exceptions=True)
        await self.deliveries.stop(SHUTDOWN_GRACE_SECONDS)
        if self.reminders is not None:
            await self.reminders.stop(SHUTDOWN_GRACE_SECONDS)
        if self.rein.desk.status is not None:  # status lines waiting out their debounce go now
            await self.rein.desk.status.stop(SHUTDOWN_GRACE_SECONDS)
        await self.kill_switch.close()
        if self.rein.slack.client.session is not None:
            await self.rein.slack.client.session.close()
        await self.rein.db.close()


SHUTDOWN_GRACE_SECONDS = 10.0
# Full collections after this many of the middle generation's (CPython's default: 10).
FULL_COLLECTION_EVERY = 100


def quieten_collector() -> None:
    """For a serving process, once started. The garbage collector's full passes stop the
    event loop for 30-90 ms with Rein's heap, and a burst of requests set them off; every
    request in flight waits (bench.ack_latency's p99 at concurrency 50 went from 145-240 ms to
    115-135 ms). What start-up loaded lives as long as the process, so it is left out of them
    (`gc.freeze`), and they come ten times less often; reference counting still frees
    everything that is not a cycle at once."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


async def _drain_listeners(timeout: float) -> None:
    """Bolt runs each listener on after its ack in a task of its own; wait for those."""
    running = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and getattr(task.get_coro(), "__name__", "") == "run_ack_function_asynchronously"
    ]
    if running:
        _, late = await asyncio.wait(running, timeout=timeout)
        if late:
            logger.warning("%d Slack listeners still running at shutdown", len(late))


@dataclass(frozen=True)
class DeliveryTimings:
    """Kill-switch timing; tests shorten it, production keeps PRODUCT.md's."""

    retry_delays: tuple[timedelta, ...] = RETRY_DELAYS
    timeout_seconds: float = DELIVERY_TIMEOUT.total_seconds()


async def build_runtime(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Clock = utc_now,
    timings: DeliveryTimings = DeliveryTimings(),
    status_debounce: float = STATUS_DEBOUNCE_SECONDS,
    reminder_timings: ReminderTimings = REMINDER_TIMINGS,
    slack_timeout: float = SLACK_TIMEOUT_SECONDS,  # tests shorten it to time calls out
) -> Runtime:
    environ = os.environ if environ is None else environ
    policy = load_checked_policy(settings, environ)
    db = await Database.open(settings.REIN_DB_PATH)
    await db.migrate()
    agents = AgentRepo(db)
    await agents.seed({a.id: a.normal_mode for a in policy.agents}, clock())
    board = AutonomyBoard()
    board.load(await agents.all())
    # slack_sdk applies its `timeout` only to sessions it makes itself: a shared session
    # times Slack's calls out on its own.
    slack_http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=slack_timeout))
    client = make_client(
        settings.SLACK_BOT_TOKEN.get_secret_value(),
        settings.REIN_SLACK_API_URL,
        slack_http,
        timeout=slack_timeout,
    )
    rein = Rein(
        policy=policy,
        db=db,
        incidents=IncidentRepo(db),
        agents=agents,
        deliveries=DeliveryRepo(db),
        evidence=EvidenceRepo(db),
        rollback=RollbackRepo(db),
        slack=SlackGateway(client),
        clock=clock,
        board=board,
        announce_channel=settings.REIN_ANNOUNCE_CHANNEL,
        triage_channel=settings.REIN_TRIAGE_CHANNEL,
    )
    kill_switch = KillSwitchClient(timings.timeout_seconds)
    secrets = {
        a.id: environ[a.kill_switch.secret_env] for a in policy.agents if a.kill_switch is not None
    }

    async def attempt(delivery_id: str) -> Delivery | None:
        return await attempt_delivery(
            delivery_id,
            deliveries=rein.deliveries,
            policy=policy,
            sender=kill_switch,
            secrets=secrets,
            clock=clock,
            delays=timings.retry_delays,
        )

    async def show(delivery: Delivery) -> None:
        incident = await rein.incidents.get(delivery.incident)
        if incident is not None:
            await refresh_surfaces(incident, **rein.surfaces)

    rein.runner = DeliveryRunner(attempt, show)

    reminders = Reminders(
        ReminderRepo(db),
        incidents=rein.incidents,
        timeline=rein.timeline,
        slack=rein.slack,
        policy=policy,
        clock=clock,
        timings=reminder_timings,
        foreground=rein.foreground,
    )
    reminders.runner = ReminderRunner(reminders.fire, clock)
    rein.incidents.on_change(reminders.changed)  # every committed change re-plans reminders
    rein.reminders = reminders

    async def post_status(number: int) -> None:
        await post_channel_status(
            number, incidents=rein.incidents, timeline=rein.timeline, slack=rein.slack, clock=clock
        )

    rein.desk.status = Debouncer(post_status, status_debounce, foreground=rein.foreground)
    bolt = make_bolt(settings, rein)
    http, secret = settings.slack_mode == "http", settings.SLACK_SIGNING_SECRET
    guard = SignatureGuard(secret.get_secret_value()) if http and secret is not None else None
    web_app = make_web_app(rein, settings.api_tokens, bolt if http else None, guard)
    return Runtime(
        settings=settings,
        rein=rein,
        bolt=bolt,
        web_app=web_app,
        kill_switch=kill_switch,
        deliveries=rein.runner,
        reminders=reminders,
    )
