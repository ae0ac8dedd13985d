"""Rein's HTTP server: health, Slack's requests in HTTP mode, and the `/v1/` API."""

import hmac
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from functools import partial

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot.api_models import (
    MAX_BODY,
    AlertRequest,
    BadInput,
    EvidenceRequest,
    RollbackRequest,
    RunRequest,
    parse_body,
)
from bot.context import Rein
from bot.debounce import Debouncer
from bot.domain.enums import IncidentStatus
from bot.domain.evidence import EvidenceTooLarge, InvalidEvidence, new_evidence
from bot.domain.gate import RunOutcome
from bot.domain.models import Incident, format_ref, parse_ref
from bot.export import evidence_recorded, incident_summary, rollback_item
from bot.services.alerts import AlertDesk, receive_alert
from bot.services.authorise import Refused
from bot.services.declare import UnknownAgent
from bot.services.evidence import add_evidence
from bot.services.restart import UnknownAgent as UnknownRunAgent
from bot.services.restart import (
    catch_up_runs,
    compose_gate_reminders,
    publish_runs,
    refresh_gate,
    report_run,
)
from bot.services.rollback import add_item
from bot.services.streamed_export import open_record
from bot.services.surfaces import refresh_surfaces
from bot.slack_guard import RELEASE_EVENT, SignatureGuard
from storage.incidents import UnknownIncident

logger = logging.getLogger(__name__)

LIST_LIMIT = 500
REIN_KEY = web.AppKey("rein", Rein)
ALERTS_KEY = web.AppKey("alerts", AlertDesk)
# Card refreshes asked for by API writes, done after answering: a burst of items from an agent
# platform costs one refresh running and at most one more, and shutdown waits for them.
CARDS_KEY = web.AppKey("cards", Debouncer)
# Run reports during a staged restart, shown in the incident channel: a burst is one message.
RUNS_KEY = web.AppKey("runs", Debouncer)
RUN_FEED_SECONDS = 1.0
RUN_FEED_MAX_SECONDS = 5.0
# The restart gate message follows every committed change of its incident (evidence, ledger,
# postmortem…), coalesced: its derived criteria are judged from those records.
GATES_KEY = web.AppKey("gates", Debouncer)
SHUTDOWN_GRACE_SECONDS = 10.0
TOKENS_KEY = web.AppKey("api_tokens", dict)
BOLT_KEY = web.AppKey("bolt", AsyncApp)
SLACK_GUARD_KEY = web.AppKey("slack_guard", SignatureGuard)
CALLER = web.RequestKey("api_caller", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, str] = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answers JSON, including aiohttp's own (404, 405, 413)."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"the body is larger than {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason.lower())


def _caller(header: str, tokens: dict[str, str]) -> str | None:
    """The token's name, compared in constant time against every configured token."""
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return None
    found = None
    for token, name in tokens.items():
        if hmac.compare_digest(token.encode(), presented.strip().encode()):
            found = name
    return found


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        name = _caller(request.headers.get("Authorization", ""), request.app[TOKENS_KEY])
        if name is None:
            return error(401, "a valid bearer token is required (REIN_API_TOKENS)")
        request[CALLER] = f"api:{name}"
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    rein = request.app[REIN_KEY]
    try:
        ok = await rein.db.ping()
    except (sqlite3.Error, ValueError):
        logger.exception("health check: the database did not answer")
        ok = False
    if not ok:
        return web.json_response({"status": "error", "error": "database unavailable"}, status=503)
    return web.json_response({"status": "ok"})


async def slack_events(request: web.Request) -> web.Response:
    # Forged, stale, malformed or replayed: refused before Bolt (which would take a replay,
    # and answers 500 to some malformed timestamps and bodies). See bot/slack_guard.py.
    guard, signature = request.app[SLACK_GUARD_KEY], request.headers.get("X-Slack-Signature")
    refusal = guard.refusal(
        await request.read(), request.headers.get("X-Slack-Request-Timestamp"), signature
    )
    if refusal is not None:
        return error(401, refusal)
    bolt = request.app[BOLT_KEY]
    bolt_request = await to_bolt_request(request)
    with request.app[REIN_KEY].foreground.answering():
        response = await bolt.async_dispatch(bolt_request)
    release = bolt_request.context.get(RELEASE_EVENT)
    if response.status >= 500 and release is not None and signature is not None:
        # An event that failed before any listener ran: Slack retries it, and the retry,
        # even byte for byte the same, must run.
        release()
        guard.forget(signature)
    return await to_aiohttp_response(response)


async def get_autonomy(request: web.Request) -> web.Response:
    """On every agent's hot path: bytes prepared when the state changed, no database read."""
    body = request.app[REIN_KEY].board.body(request.match_info["agent_id"])
    if body is None:
        return error(404, f"there is no agent {request.match_info['agent_id']!r}", "agent_id")
    return web.Response(body=body, content_type="application/json")


async def _incident(request: web.Request) -> Incident | web.Response:
    """The incident `{ref}` names, or the 404 to answer."""
    try:
        number = parse_ref(request.match_info["ref"])
    except ValueError as exc:
        return error(404, str(exc), "ref")
    incident = await request.app[REIN_KEY].incidents.get(number)
    if incident is None:
        return error(404, f"there is no incident INC-{number}", "ref")
    return incident


async def get_incident(request: web.Request) -> web.StreamResponse:
    """The whole record as `json.dumps(incident_document(...))` would write it, a batch of
    rows at a time (bot/services/streamed_export.py): answering an incident of 100,000
    entries holds neither the event loop nor Rein's memory for its whole size."""
    rein = request.app[REIN_KEY]
    incident = await _incident(request)
    if isinstance(incident, web.Response):
        return incident
    record = await open_record(
        incident.number,
        incidents=rein.incidents,
        timeline=rein.timeline,
        evidence=rein.evidence,
        rollback=rein.rollback,
        postmortems=rein.postmortems,
    )
    if record is None:  # incidents are never deleted; for the type checker
        return error(404, f"there is no incident {incident.ref}", "ref")
    response = web.StreamResponse()
    response.content_type, response.charset = "application/json", "utf-8"
    await response.prepare(request)
    async for piece in record.json(indent=None, ensure_ascii=True):
        await response.write(piece.encode())
    await response.write_eof()
    return response


async def list_incidents(request: web.Request) -> web.Response:
    rein = request.app[REIN_KEY]
    status = request.query.get("status") or None
    if status not in (None, "open", *IncidentStatus):
        allowed = ", ".join(["open", *IncidentStatus])
        return error(422, f"status must be one of: {allowed}", "status")
    incidents = await rein.incidents.newest(status, limit=LIST_LIMIT)
    return web.json_response({"incidents": [incident_summary(i) for i in incidents]})


async def post_alert(request: web.Request) -> web.Response:
    rein = request.app[REIN_KEY]
    try:
        alert = parse_body(AlertRequest, await request.read())  # over MAX_BODY: 413
    except BadInput as exc:
        return error(422, str(exc), exc.field)
    try:
        received = await receive_alert(alert, caller=request[CALLER], **rein.containment)
    except UnknownAgent:
        return error(404, f"there is no agent {alert.agent!r}", "agent")
    if received.contained is not None and received.contained.delivery is not None:
        rein.deliver(received.contained.delivery.id)
    # Recorded and committed (and, by a policy rule, contained: the autonomy API already
    # answers `paused`). Slack follows after this answer, in tasks that shutdown waits for.
    request.app[ALERTS_KEY].publish(received)
    return web.json_response(received.answer(), status=200 if received.duplicate else 201)


async def post_evidence(request: web.Request) -> web.Response:
    """An item for the evidence store: 201 with what was recorded; the card follows."""
    rein = request.app[REIN_KEY]
    incident = await _incident(request)
    if isinstance(incident, web.Response):
        return incident
    number = incident.number
    try:
        body = parse_body(EvidenceRequest, await request.read())  # over MAX_BODY: 413
        new = new_evidence(
            body.kind, content=body.content, url=body.url, source=body.source, note=body.note
        )
    except BadInput as exc:
        return error(422, str(exc), exc.field)
    except EvidenceTooLarge as exc:
        return error(413, str(exc), exc.field)
    except InvalidEvidence as exc:
        return error(422, str(exc), exc.field)
    try:
        added = await add_evidence(
            number,
            new,
            actor=request[CALLER],
            incidents=rein.incidents,
            evidence=rein.evidence,
            clock=rein.clock,
        )
    except UnknownIncident:
        return error(404, f"there is no incident INC-{number}", "ref")
    request.app[CARDS_KEY].poke(added.incident.number)
    kinds = await rein.evidence.kinds(number)
    return web.json_response(evidence_recorded(added.incident, added.item, kinds), status=201)


async def post_rollback(request: web.Request) -> web.Response:
    """An affected record for the rollback ledger: 201 with the item; the same system and
    record again: 200 with the item already there and `"duplicate": true`. The card follows."""
    rein = request.app[REIN_KEY]
    incident = await _incident(request)
    if isinstance(incident, web.Response):
        return incident
    number = incident.number
    try:
        body = parse_body(RollbackRequest, await request.read())  # over MAX_BODY: 413
    except BadInput as exc:
        return error(422, str(exc), exc.field)
    try:
        added = await add_item(
            number,
            body,
            actor=request[CALLER],
            incidents=rein.incidents,
            rollback=rein.rollback,
            clock=rein.clock,
        )
    except UnknownIncident:
        return error(404, f"there is no incident INC-{number}", "ref")
    except Refused as exc:  # closed or dismissed: its ledger is final
        return error(409, str(exc), "ref")
    if not added.duplicate:
        request.app[CARDS_KEY].poke(added.incident.number)
    answer = {"incident": added.incident.ref, **rollback_item(added.item)}
    return web.json_response(
        {**answer, "duplicate": added.duplicate}, status=200 if added.duplicate else 201
    )


async def post_run(request: web.Request) -> web.Response:
    """A run report: 201 with what was recorded (`counted` says whether a staged restart
    counted it); a run_id seen before for the agent: 200 with the stored report and
    `"duplicate": true`. A failed or flagged run during a stage contains the agent again
    before this answers (the autonomy API answers `paused`)."""
    rein = request.app[REIN_KEY]
    agent_id = request.match_info["agent_id"]
    if rein.policy.agent(agent_id) is None:
        return error(404, f"there is no agent {agent_id!r}", "agent_id")
    try:
        body = parse_body(RunRequest, await request.read())  # over MAX_BODY: 413
    except BadInput as exc:
        return error(422, str(exc), exc.field)
    try:
        result = await report_run(
            agent_id,
            body.run_id,
            RunOutcome(body.outcome),
            body.summary,
            body.cost,
            caller=request[CALLER],
            rein=rein,
        )
    except UnknownRunAgent:
        return error(404, f"there is no agent {agent_id!r}", "agent_id")
    if result.recontained is not None and result.recontained.delivery is not None:
        rein.deliver(result.recontained.delivery.id)
    if result.counted and not result.duplicate:
        request.app[RUNS_KEY].poke(result.run["incident"])
    run, restart = result.run, result.restart
    answer = {
        "agent": agent_id,
        "run_id": run["run_id"],
        "outcome": run["outcome"],
        "incident": format_ref(run["incident"]) if run["incident"] else None,
        "stage": run["stage"],
        "counted": result.counted,
        "clean_runs": restart.clean_runs if restart and not result.duplicate else None,
        "needed": restart.needed if restart else None,
        "recontained": result.recontained is not None,
        "duplicate": result.duplicate,
    }
    return web.json_response(answer, status=200 if result.duplicate else 201)


async def _catch_up_runs(app: web.Application) -> None:
    """Rein restarted mid-probation: runs not yet shown, and offers due, go out now."""
    for number in await catch_up_runs(app[REIN_KEY]):
        app[RUNS_KEY].poke(number)


async def _drain_runs(app: web.Application) -> None:
    await app[RUNS_KEY].stop(SHUTDOWN_GRACE_SECONDS)
    await app[GATES_KEY].stop(SHUTDOWN_GRACE_SECONDS)


async def refresh_card(rein: Rein, number: int) -> None:
    incident = await rein.incidents.get(number)
    if incident is not None:
        for problem in await refresh_surfaces(incident, **rein.surfaces):
            logger.warning("%s: %s", incident.ref, problem)


async def _drain_alerts(app: web.Application) -> None:
    await app[ALERTS_KEY].drain()


async def _drain_cards(app: web.Application) -> None:
    await app[CARDS_KEY].stop(SHUTDOWN_GRACE_SECONDS)


def make_web_app(
    rein: Rein,
    api_tokens: dict[str, str],
    bolt: AsyncApp | None,
    slack_guard: SignatureGuard | None = None,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors, bearer_auth])
    app[REIN_KEY] = rein
    app[TOKENS_KEY] = api_tokens
    app[ALERTS_KEY] = AlertDesk(rein)
    app.on_cleanup.append(_drain_alerts)  # after in-flight requests, before the database closes
    app[CARDS_KEY] = Debouncer(partial(refresh_card, rein), delay=0, foreground=rein.foreground)
    app.on_cleanup.append(_drain_cards)
    app[RUNS_KEY] = Debouncer(partial(publish_runs, rein), RUN_FEED_SECONDS, RUN_FEED_MAX_SECONDS)
    app.on_startup.append(_catch_up_runs)
    app.on_cleanup.append(_drain_runs)
    app[GATES_KEY] = Debouncer(partial(refresh_gate, rein), delay=0.1, foreground=rein.foreground)
    rein.incidents.on_change(app[GATES_KEY].poke)
    compose_gate_reminders(rein)
    app.router.add_get("/healthz", healthz)
    if bolt is not None:
        if slack_guard is None:
            raise ValueError("Slack's HTTP requests need a SignatureGuard")
        app[BOLT_KEY] = bolt
        app[SLACK_GUARD_KEY] = slack_guard
        app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/v1/agents/{agent_id}/autonomy", get_autonomy)
    app.router.add_get("/v1/incidents", list_incidents)
    app.router.add_get("/v1/incidents/{ref}", get_incident)
    app.router.add_post("/v1/alerts", post_alert)
    app.router.add_post("/v1/incidents/{ref}/evidence", post_evidence)
    app.router.add_post("/v1/incidents/{ref}/rollback", post_rollback)
    app.router.add_post("/v1/agents/{agent_id}/runs", post_run)
    return app
