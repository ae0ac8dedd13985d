from enum import StrEnum


class Severity(StrEnum):
    SEV1 = "sev1"
    SEV2 = "sev2"
    SEV3 = "sev3"
    SEV4 = "sev4"

    @property
    def label(self) -> str:
        return f"SEV-{self.value[-1]}"

    @property
    def level(self) -> int:
        """1 is the most severe."""
        return int(self.value[-1])


class IncidentStatus(StrEnum):
    TRIAGE = "triage"
    DECLARED = "declared"
    CONTAINED = "contained"
    RECOVERED = "recovered"
    POSTMORTEM = "postmortem"
    CLOSED = "closed"
    DISMISSED = "dismissed"

    @property
    def is_open(self) -> bool:
        return self not in (IncidentStatus.CLOSED, IncidentStatus.DISMISSED)


class AutonomyMode(StrEnum):
    """From least to most trusted."""

    PAUSED = "paused"
    SHADOW = "shadow"
    READ_ONLY = "read_only"
    SUPERVISED = "supervised"
    AUTONOMOUS = "autonomous"


class ContainmentMove(StrEnum):
    PAUSE_RUNS = "pause_runs"
    REVOKE_WRITES = "revoke_writes"
    DISABLE_SCHEDULES = "disable_schedules"
    FREEZE_OUTBOUND = "freeze_outbound"


class DeliveryState(StrEnum):
    PENDING = "pending"  # being delivered or waiting for its next attempt
    CONFIRMED = "confirmed"  # the kill switch answered 2xx in time
    UNCONFIRMED = "unconfirmed"  # every attempt failed: shown loudly, with a retry button


class DeliveryEvent(StrEnum):
    CONTAINMENT = "containment"
    AUTONOMY_CHANGED = "autonomy_changed"


class TimelineKind(StrEnum):
    DECLARED = "declared"
    STATUS_CHANGED = "status_changed"
    SEVERITY_CHANGED = "severity_changed"
    REFUSED = "refused"
    NOTE = "note"
    PINNED_MESSAGE = "pinned_message"
    SLACK_PROBLEM = "slack_problem"
    PLAN_CHANGED = "plan_changed"
    AUTONOMY_CHANGED = "autonomy_changed"
    DELIVERY = "delivery"
    ALERT = "alert"
    EVIDENCE = "evidence"
    ROLLBACK = "rollback"
    STATUS_UPDATE = "status_update"
    STATUS_POSTED = "status_posted"  # Rein's one-line channel status: what it said, and up to where
    POSTMORTEM = "postmortem"  # a postmortem saved (draft or completed), its parts in `data`
    REMINDER = "reminder"  # a reminder Rein sent (bot/domain/reminders.py)
    REMINDER_SNOOZED = "reminder_snoozed"  # update reminders snoozed: `data.until`
    GATE = "gate"  # the restart gate: opened, a criterion checked, unchecked or accepted
    RUN = "run"  # a run report during a staged restart (bot/services/restart.py)


class RollbackStatus(StrEnum):
    PENDING = "pending"
    RESTORED = "restored"
    ACCEPTED = "accepted"  # the loss is accepted as it is
    NOT_REVERSIBLE = "not_reversible"


class EvidenceKind(StrEnum):
    """The playbook's list of what to preserve, plus `other`."""

    PROMPT = "prompt"
    SYSTEM_INSTRUCTIONS = "system_instructions"
    MODEL_VERSION = "model_version"
    TOOL_CALLS = "tool_calls"
    FILES_READ = "files_read"
    RECORDS_CHANGED = "records_changed"
    EXTERNAL_URLS = "external_urls"
    REVIEWER_NOTES = "reviewer_notes"
    TIMESTAMPS = "timestamps"
    COST = "cost"
    RETRIES = "retries"
    FINAL_OUTPUT = "final_output"
    HANDOFF_CONTRACT = "handoff_contract"
    VERIFIER_RESULT = "verifier_result"
    APPROVAL_CONTEXT = "approval_context"
    OTHER = "other"


class PostmortemState(StrEnum):
    DRAFT = "draft"  # any responder may edit it
    COMPLETED = "completed"  # final: the incident moved to `postmortem`
