"""Recovery point verdicts: pure, with ``now`` passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stackback.rpo import TargetHistory, Verdict, due_since, judge, previous_fire
from stackback.schedule import CronSchedule

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAILY = CronSchedule("0 1 * * *", "UTC")


@pytest.mark.parametrize(
    ("cron", "zone", "cutoff", "expected"),
    [
        ("0 1 * * *", "UTC", NOW, datetime(2026, 3, 10, 1, tzinfo=UTC)),
        (
            "0 1 * * *",
            "UTC",
            datetime(2026, 3, 10, 1, tzinfo=UTC),
            datetime(2026, 3, 10, 1, tzinfo=UTC),
        ),
        ("*/5 * * * *", "UTC", NOW + timedelta(minutes=3), NOW),
        ("0 3 1 * *", "Europe/Amsterdam", NOW, datetime(2026, 3, 1, 2, tzinfo=UTC)),
        ("0 0 29 2 *", "UTC", NOW, datetime(2024, 2, 29, tzinfo=UTC)),
    ],
)
def test_previous_fire(cron: str, zone: str, cutoff: datetime, expected: datetime) -> None:
    assert previous_fire(CronSchedule(cron, zone), cutoff) == expected


def test_due_since_leaves_the_window_and_the_grace_to_the_newest_occurrence() -> None:
    window, grace = timedelta(minutes=60), timedelta(hours=1)
    at_three = datetime(2026, 3, 10, 3, tzinfo=UTC)
    assert due_since([DAILY], window, at_three, grace) == datetime(2026, 3, 10, 1, tzinfo=UTC)
    just_before = at_three - timedelta(seconds=1)
    assert due_since([DAILY], window, just_before, grace) == datetime(2026, 3, 9, 1, tzinfo=UTC)
    hourly = CronSchedule("30 * * * *", "UTC")
    assert due_since([DAILY, hourly], window, NOW, grace) == datetime(
        2026, 3, 10, 9, 30, tzinfo=UTC
    )


DUE = datetime(2026, 3, 10, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("history", "due", "enabled", "verdict", "words"),
    [
        (TargetHistory(DUE + timedelta(minutes=5)), DUE, True, Verdict.OK, "as recent"),
        (TargetHistory(None), None, True, Verdict.OK, "no backup due yet"),
        (TargetHistory(None), DUE, True, Verdict.NEVER, "no good backup yet"),
        (
            TargetHistory(None, "failed", "cloud-rejected: no"),
            DUE,
            True,
            Verdict.NEVER,
            "cloud-rejected",
        ),
        (
            TargetHistory(DUE - timedelta(days=1), "failed", "boom"),
            DUE,
            True,
            Verdict.FAILING,
            "boom",
        ),
        (
            TargetHistory(DUE - timedelta(days=3), "missed", None, 2),
            DUE,
            True,
            Verdict.LATE,
            "2 occurrence",
        ),
        (TargetHistory(DUE - timedelta(days=1)), DUE, False, Verdict.LATE, "policy disabled"),
    ],
)
def test_judge(
    history: TargetHistory, due: datetime | None, enabled: bool, verdict: Verdict, words: str
) -> None:
    status = judge(history, due, enabled=enabled)
    assert status.verdict is verdict
    assert words in status.reason
