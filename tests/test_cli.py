"""`rein run | check | migrate | export` as real processes."""

import asyncio
import gc
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.app import FULL_COLLECTION_EVERY, quieten_collector
from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.domain.models import NewIncident, TimelineEntry
from storage.db import Database
from storage.incidents import IncidentRepo
from tests.conftest import POLICY, assert_no_secrets
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SIGNING_SECRET

ROOT = Path(__file__).resolve().parents[1]
CLEAN_ENV = {
    "PATH": os.environ["PATH"],
    "PYTHONPATH": str(ROOT),
    "HOME": os.environ.get("HOME", str(ROOT)),
}


async def rein_cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 30
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env={**CLEAN_ENV, **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    assert_no_secrets(out.decode() + err.decode(), f"rein {args[0]}'s output")
    return process.returncode, out.decode(), err.decode()


def full_env(fake: FakeSlack, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": fake.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "REIN_SLACK_API_URL": fake.api_url,
        "REIN_DB_PATH": str(tmp_path / "rein.db"),
        "REIN_POLICY_PATH": str(POLICY),
        "REIN_PORT": str(free_port()),
        **extra,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_run_without_tokens_stops_at_once_naming_the_variable(tmp_path: Path) -> None:
    code, _, err = await rein_cli("run", env={}, cwd=tmp_path)
    assert code == 2
    assert "SLACK_BOT_TOKEN is not set" in err
    assert "README.md, section 'Create the Slack app'" in err
    assert not (tmp_path / "data").exists()  # nothing started half-configured


async def test_run_with_a_missing_kill_switch_secret_names_agent_and_variable(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    policy = tmp_path / "rein.yml"
    policy.write_text(
        POLICY.read_text().replace(
            "    clean_runs_per_stage: 3\n",
            '    clean_runs_per_stage: 3\n    kill_switch: {url: "http://127.0.0.1:9/kill", '
            "secret_env: REIN_KS_CRM}\n",
        )
    )
    env = full_env(fake_slack, tmp_path, REIN_POLICY_PATH=str(policy))
    code, _, err = await rein_cli("run", env=env, cwd=tmp_path)
    assert code == 2 and "agent crm-writer" in err and "REIN_KS_CRM" in err


async def test_run_serves_and_stops_cleanly_on_sigterm(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    env = full_env(fake_slack, tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env={**CLEAN_ENV, **env},
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{env['REIN_PORT']}/healthz"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(url) as response:
                        assert await response.json() == {"status": "ok"}
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("rein run did not start serving")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0
    assert fake_slack.token not in err.decode() and SIGNING_SECRET not in err.decode()
    assert_no_secrets(err.decode(), "rein run's log")
    assert oct((tmp_path / "rein.db").stat().st_mode & 0o777) == "0o600"


async def test_check_gives_a_verdict_for_each_part(tmp_path: Path, fake_slack: FakeSlack) -> None:
    code, out, _ = await rein_cli("check", env=full_env(fake_slack, tmp_path), cwd=tmp_path)
    lines = out.splitlines()
    assert code == 0, out
    for part in ("configuration", "policy", "database", "slack auth.test"):
        assert any(line.startswith(f"ok   {part}") for line in lines), out
    assert "migrations pending" in out  # a new database has not been migrated yet

    bad = full_env(fake_slack, tmp_path, SLACK_BOT_TOKEN="xoxb-revoked")
    code, out, _ = await rein_cli("check", env=bad, cwd=tmp_path)
    assert code == 1 and "FAIL slack auth.test" in out and "xoxb-revoked" not in out

    code, out, _ = await rein_cli(
        "check", env={"REIN_POLICY_PATH": str(tmp_path / "no.yml")}, cwd=tmp_path
    )
    assert code == 1
    assert "FAIL configuration" in out and "FAIL policy" in out and "does not exist" in out


async def test_migrate_then_export(tmp_path: Path) -> None:
    env = {"REIN_DB_PATH": str(tmp_path / "rein.db")}
    code, out, _ = await rein_cli("migrate", env=env, cwd=tmp_path)
    shipped = sorted(int(p.name[:4]) for p in (ROOT / "storage" / "migrations").glob("*.sql"))
    assert code == 0 and f"applied {shipped}" in out
    code, out, _ = await rein_cli("migrate", env=env, cwd=tmp_path)
    assert code == 0 and "already up to date" in out

    db = await Database.open(env["REIN_DB_PATH"])
    try:
        from datetime import UTC, datetime

        at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
        new = NewIncident(
            title="Wrong | field",
            agent_id="crm-writer",
            severity=Severity.SEV3,
            declared_by="U0ALICE",
        )
        entry = TimelineEntry(
            at=at, actor="U0ALICE", kind=TimelineKind.DECLARED, text="Declared SEV-3"
        )
        await IncidentRepo(db).create(
            new, status=IncidentStatus.DECLARED, commander="U0ALICE", entry=entry
        )
    finally:
        await db.close()

    code, out, _ = await rein_cli("export", "INC-1", "--format", "json", env=env, cwd=tmp_path)
    body = json.loads(out)
    assert (
        code == 0 and body["ref"] == "INC-1" and body["timeline"][0]["at"] == "2026-11-24T09:30:00Z"
    )
    code, out, _ = await rein_cli("export", "1", env=env, cwd=tmp_path)
    assert code == 0 and out.startswith("# INC-1: Wrong \\| field")
    assert "| 2026-11-24T09:30:00Z | U0ALICE | declared | Declared SEV-3 |" in out
    target = tmp_path / "inc1.md"
    target.write_text("an older export, readable by all")
    target.chmod(0o644)
    code, _, _ = await rein_cli("export", "inc-1", "--output", str(target), env=env, cwd=tmp_path)
    assert code == 0 and target.read_text().startswith("# INC-1")
    assert target.stat().st_mode & 0o777 == 0o600, "the export holds evidence: owner only"
    assert not (tmp_path / "inc1.md.partial").exists()
    code, _, err = await rein_cli("export", "INC-9", env=env, cwd=tmp_path)
    assert code == 1 and "no incident INC-9" in err
    code, _, err = await rein_cli("export", "yesterday", env=env, cwd=tmp_path)
    assert code == 2 and "not an incident reference" in err


def test_quieten_collector_freezes_start_up_and_makes_full_passes_rarer() -> None:
    """What `rein run` does once started (bot/app.py `quieten_collector`)."""
    before = gc.get_threshold()
    try:
        quieten_collector()
        assert gc.get_threshold() == (before[0], before[1], FULL_COLLECTION_EVERY)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
