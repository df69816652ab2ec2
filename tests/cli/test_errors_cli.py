"""Bad input: one line on stderr naming the problem, exit 2, no traceback, nothing written."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from stackback.config import state_dir
from stackback.store.database import head_revision
from tests.cli.conftest import CliRunner, assert_one_line_error, ok_json, start_process

CRON = "0 1 * * *"
VALID = ["--server", "web1", "--cron", CRON, "--keep-last", "7"]


@pytest.fixture
def existing(cli: CliRunner) -> dict[str, object]:
    """One policy; every refused command below must leave it exactly as it is."""
    return ok_json(
        cli, "policy", "create", "keep", "--server", "web1", "--cron", CRON,
        "--timezone", "Europe/Amsterdam", "--keep-daily", "7",
    )  # fmt: skip


def snapshot(cli: CliRunner) -> list[dict[str, object]]:
    rows = ok_json(cli, "policy", "list")
    return sorted(rows, key=lambda r: str(r["name"]))


CREATE_ERRORS = [
    pytest.param([*VALID, "--kind", "tape"], ["--kind", "tape"], id="unknown-kind"),
    pytest.param([*VALID, "-f", "yaml"], ["yaml"], id="unknown-format"),
    pytest.param(["--server", "a", "--cron", "0 25 * * *"], ["cron", "0 25"], id="bad-cron"),
    pytest.param(["--server", "a", "--cron", "bad"], ["cron"], id="cron-one-field"),
    pytest.param([*VALID, "--timezone", "Mars/Olympus"], ["Mars/Olympus"], id="bad-zone"),
    pytest.param([*VALID, "--keep-last", "-1"], ["--keep-last", "-1"], id="negative-count"),
    pytest.param([*VALID, "--keep-daily", "1.5"], ["--keep-daily", "1.5"], id="non-integer"),
    pytest.param([*VALID, "--keep-last", "²"], ["--keep-last", "²"], id="superscript-count"),
    pytest.param([*VALID, "--keep-last", "٣"], ["--keep-last", "٣"], id="non-ascii-digit"),
    pytest.param([*VALID, "--keep-last", "9" * 5000], ["--keep-last", "large"], id="huge-count"),
    pytest.param([*VALID, "--keep-weekly", "many"], ["--keep-weekly"], id="word-count"),
    pytest.param([*VALID, "--keep-within", "1w"], ["1w"], id="duration-weeks"),
    pytest.param([*VALID, "--keep-within-daily", "3"], ["3"], id="bare-number"),
    pytest.param([*VALID, "--keep-within", "1.5d"], ["1.5d"], id="fractional-duration"),
    pytest.param(["--cron", CRON], ["targets"], id="no-targets"),
    pytest.param(["--server", "a"], ["--cron"], id="no-cron"),
    pytest.param(["--selector", "role", "--cron", CRON], ["selector", "role"], id="bad-selector"),
    pytest.param(["--server", "a", "--selector", "k=v", "--cron", CRON], ["--selector"], id="both"),
    pytest.param([*VALID, "--window", "-5"], ["--window"], id="negative-window"),
    pytest.param([*VALID, "--window", "soon"], ["--window"], id="non-integer-window"),
    pytest.param([*VALID, "--cron", CRON], ["twice"], id="duplicate-cron"),
    pytest.param([*VALID, "--bogus"], ["--bogus"], id="unknown-option"),
]


@pytest.mark.parametrize(("args", "words"), CREATE_ERRORS)
def test_create_refused(
    cli: CliRunner, existing: dict[str, object], args: list[str], words: list[str]
) -> None:
    before = snapshot(cli)
    result = cli("policy", "create", "new", *args)
    assert result.code == 2
    assert result.out == ""
    assert_one_line_error(result.err, *words)
    assert snapshot(cli) == before


def test_a_name_is_kept_as_given_or_refused(cli: CliRunner) -> None:
    """Never stored stripped: a policy must be found by the name it was created with."""
    result = cli("policy", "create", " sp ", *VALID)
    assert result.code == 2
    assert_one_line_error(result.err, "white space")
    assert ok_json(cli, "policy", "list") == []


SET_ERRORS = [
    pytest.param(["--cron", "* * *"], ["cron"], id="bad-cron"),
    pytest.param(["--timezone", "Europe/Atlantis"], ["Europe/Atlantis"], id="bad-zone"),
    pytest.param(["--keep-last", "-3"], ["--keep-last", "-3"], id="negative-count"),
    pytest.param(["--keep-hourly", "2x"], ["--keep-hourly"], id="non-integer"),
    pytest.param(["--keep-hourly", "²"], ["--keep-hourly", "²"], id="superscript-count"),
    pytest.param(["--keep-within", "2d5"], ["2d5"], id="bad-duration"),
    pytest.param(["--selector", "=v"], ["selector"], id="bad-selector"),
    pytest.param(["--kind", "tape"], ["--kind"], id="unknown-kind"),
    pytest.param(["--window", "2000"], ["--window"], id="window-too-long"),
    pytest.param(["--name", "  "], ["name"], id="blank-name"),
    pytest.param(["--name", " spaced "], ["white space", "' spaced '"], id="padded-name"),
    # valid changes given together with a bad one are not applied either
    pytest.param(["--keep-daily", "1", "--cron", "nope"], ["cron"], id="partly-valid"),
]


@pytest.mark.parametrize(("args", "words"), SET_ERRORS)
def test_set_refused(
    cli: CliRunner, existing: dict[str, object], args: list[str], words: list[str]
) -> None:
    before = snapshot(cli)
    result = cli("policy", "set", "keep", *args)
    assert result.code == 2
    assert_one_line_error(result.err, *words)
    assert snapshot(cli) == before


@pytest.mark.parametrize(
    "args",
    [
        ["policy", "show", "ghost"],
        ["policy", "set", "ghost", "--keep-last", "1"],
        ["policy", "enable", "ghost"],
        ["policy", "disable", "ghost"],
        ["policy", "delete", "ghost"],
        ["retention", "preview", "ghost"],
        ["backup", "list", "--policy", "ghost"],
        ["run", "list", "--policy", "ghost"],
    ],
)
def test_unknown_policy(cli: CliRunner, existing: dict[str, object], args: list[str]) -> None:
    before = snapshot(cli)
    result = cli(*args)
    assert result.code == 2
    assert_one_line_error(result.err, "ghost")
    assert snapshot(cli) == before


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://u@h/db", ["mysql"]),
        ("not a url", ["database URL"]),
        ("postgresql+psycopg2://u@h/db", ["psycopg2", "driver"]),
    ],
)
def test_bad_db_url(cli: CliRunner, url: str, words: list[str]) -> None:
    result = cli("--db", url, "policy", "create", "p", *VALID)
    assert result.code == 2
    assert_one_line_error(result.err, *words)


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--once", "--poll-interval", "-1"],
        ["scheduler", "--once", "--lease", "0"],
        ["worker", "--once", "--grace", "-5"],
        ["run", "list", "--state", "exploded"],
        ["run", "list", "--limit", "0"],
        ["backup", "list", "--limit", str(2**63)],
        ["backup", "now", "web1", "--keep-last", "0"],
        ["policy", "nonsense"],
        ["policy", "create"],
    ],
)
def test_other_bad_input(cli: CliRunner, args: list[str]) -> None:
    result = cli(*args)
    assert result.code == 2
    assert_one_line_error(result.err)
    assert ok_json(cli, "run", "list") == []


ENGINE_TIMING_ERRORS = [
    pytest.param(["--poll-interval", "nan"], ["--poll-interval", "finite"], id="nan"),
    pytest.param(["--poll-interval", "inf"], ["--poll-interval", "finite"], id="inf"),
    pytest.param(
        ["--poll-interval", "1e20"],
        ["--poll-interval", "at most 31536000 seconds (a year)"],
        id="beyond-timedelta",
    ),
    pytest.param(["--lease", "1e308"], ["--lease", "a year"], id="huge-lease"),
    pytest.param(["--grace", "1e400"], ["--grace", "finite"], id="overflowing-literal"),
    pytest.param(["--retry-window", "nan"], ["--retry-window", "finite"], id="nan-window"),
    pytest.param(["--lease", "1e-9"], ["--lease", "positive"], id="rounds-to-zero"),
    pytest.param(
        ["--max-snapshots-per-host", "0"], ["--max-snapshots-per-host"], id="no-snapshot-at-all"
    ),
    pytest.param(["--time-scale", "nan"], ["--time-scale", "finite"], id="nan-scale"),
    pytest.param(["--time-scale", "1e300"], ["--time-scale", "at most"], id="huge-scale"),
    pytest.param(
        ["--time-scale", "2", "--time-origin", "1e20"], ["--time-origin"], id="far-origin"
    ),
    pytest.param(
        ["--time-scale", "2", "--time-origin", "-inf"], ["--time-origin", "finite"], id="inf-origin"
    ),
]


@pytest.mark.parametrize(("args", "words"), ENGINE_TIMING_ERRORS)
def test_engine_timing_out_of_range(cli: CliRunner, args: list[str], words: list[str]) -> None:
    result = cli("--os-cloud", "sim", "serve", "--once", *args)
    assert result.code == 2
    assert_one_line_error(result.err, *words)


def _faulty_database(fault: str, tmp_path: Path, cli: CliRunner) -> tuple[str, list[str]]:
    """The URL of a database that fails underneath stackback, and what its error names."""
    if fault == "directory":
        return f"sqlite:///{tmp_path}", [f"database sqlite:///{tmp_path}: unable to open"]
    if fault == "not-a-database":
        (tmp_path / "notes.db").write_text("not a database\n" * 100)
        url = f"sqlite:///{tmp_path / 'notes.db'}"
        return url, [f"database {url}: file is not a database"]
    if fault == "read-only":
        assert cli("--db", f"sqlite:///{tmp_path / 'ro.db'}", "db", "upgrade").code == 0
        url = f"sqlite:///file:{tmp_path / 'ro.db'}?mode=ro&uri=true"
        return url, ["ro.db?mode=ro&uri=true: attempt to write a readonly database"]
    assert fault == "unreachable"
    url = "postgresql://stackback:secret@127.0.0.1:1/stackback"
    return url, ["database postgresql+psycopg://stackback:***@127.0.0.1:1/stackback: ", "port 1"]


@pytest.mark.parametrize("fault", ["directory", "not-a-database", "read-only", "unreachable"])
def test_database_faults_are_one_line(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    monkeypatch.chdir(tmp_path)  # a SQLite "file:" URI makes a directory named after it
    url, words = _faulty_database(fault, tmp_path, cli)
    result = cli("--db", url, "policy", "create", "p", *VALID)
    assert result.code == 1
    assert result.out == ""
    assert_one_line_error(result.err, *words, "error id")
    assert "internal error" not in result.err
    assert "secret" not in result.err
    # sqlite3 reports some bugs as OperationalError too: the traceback is kept under the id
    error_id = re.search(r"error id ([0-9a-f]+); details in ", result.err)
    assert error_id is not None, result.err
    logged = (state_dir() / "logs" / "errors.log").read_text()
    assert f"--- error {error_id[1]}\nTraceback" in logged


def test_a_fault_says_so_when_its_details_cannot_be_logged(cli: CliRunner, tmp_path: Path) -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / "logs").write_text("a file where the log directory goes")
    url, words = _faulty_database("not-a-database", tmp_path, cli)
    result = cli("--db", url, "policy", "list")
    assert result.code == 1
    assert_one_line_error(result.err, *words, "details not logged: cannot write")


def test_schema_newer_than_this_stackback_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    assert cli("--db", f"sqlite:///{path}", "db", "upgrade").code == 0
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    for args in (["policy", "list"], ["db", "upgrade"], ["db", "status"]):
        result = cli("--db", f"sqlite:///{path}", *args)
        assert result.code == 1, args
        assert_one_line_error(
            result.err,
            "schema revision 0099",
            "newer",
            f"up to {head_revision()}",
            "upgrade stackback",
        )
        assert "db upgrade" not in result.err


def test_a_state_directory_that_is_a_file_is_refused(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    occupied = tmp_path / "occupied"
    occupied.write_text("not a directory")
    monkeypatch.setenv("STACKBACK_STATE_DIR", str(occupied))
    result = cli("policy", "list")
    assert result.code == 2
    assert_one_line_error(result.err, f"state directory {occupied} is not a directory")
    assert occupied.read_text() == "not a directory"
    elsewhere = cli("--db", f"sqlite:///{tmp_path / 'elsewhere.db'}", "policy", "list")
    assert elsewhere.code == 0, elsewhere.err  # a database given explicitly needs no state dir


def test_a_sqlite_path_under_a_file_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.write_text("not a directory")
    result = cli("--db", f"sqlite:///{occupied}/stackback.db", "policy", "list")
    assert result.code == 2
    assert_one_line_error(result.err, f"cannot create its directory {occupied}", "file")
    assert occupied.read_text() == "not a directory"


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("not-a-database", ["cannot be opened", "file is not a database"]),
        ("a-directory", ["cannot be opened", "unable to open"]),
        ("typo/sim.sqlite", ["directory", "typo", "does not exist"]),
    ],
)
def test_a_simulated_cloud_that_cannot_be_opened_is_one_line(
    cli: CliRunner, tmp_path: Path, where: str, words: list[str]
) -> None:
    (tmp_path / "not-a-database").write_text("not sqlite\n" * 100)
    (tmp_path / "a-directory").mkdir()
    result = cli("--os-cloud", f"sim:{tmp_path / where}", "reconcile")
    assert result.code == 2
    assert_one_line_error(result.err, "simulated cloud", *words)
    assert not (tmp_path / "typo").exists()


# -- real processes: nothing but the one line reaches the terminal ---------------------


@pytest.mark.slow  # real processes
def test_real_processes_print_one_line_and_write_nothing(cli: CliRunner, tmp_path: Path) -> None:
    """The console script, in real processes (started together: each takes a second or more)."""
    ok_json(cli, "policy", "create", "p", *VALID)
    before = ok_json(cli, "policy", "list")
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE unrelated (x INTEGER)").connection.close()
    cases = [
        (["policy", "create", "n", "--server", "a", "--cron", "0 0 31 2 * *"], None, ["cron"]),
        (["policy", "set", "p", "--timezone", "Moon/Base"], None, ["Moon/Base"]),
        (["policy", "create", "orphan", "--cron", CRON], None, ["orphan", "--server"]),
        (["policy", "show", "ghost"], None, ["ghost"]),
        (["--db", "oracle://scott@db/orcl", "policy", "list"], None, ["oracle"]),
        (["retention", "preview", "--keep-last", "2"], "yesterday\n", ["yesterday"]),
    ]
    unmigrated = ["--db", f"sqlite:///{empty}", "policy", "list"]
    processes = [start_process(*args, stdin=stdin) for args, stdin, _ in cases]
    refused = start_process(*unmigrated)
    for process, (args, _, words) in zip(processes, cases, strict=True):
        out, err = process.communicate()
        assert process.returncode == 2, (args, err)
        assert out == "", args
        assert_one_line_error(err, *words)
    out, err = refused.communicate()
    assert refused.returncode != 0
    assert out == ""
    assert_one_line_error(err, "no stackback schema", "stackback db upgrade")

    assert ok_json(cli, "policy", "list") == before
    with sqlite3.connect(empty) as conn:  # refused, not migrated behind the user's back
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"unrelated"}


def test_set_with_an_empty_server_is_refused(cli: CliRunner) -> None:
    assert (
        cli(
            "policy", "create", "a", "--selector", "k=v", "--cron", "0 1 * * *", "--keep-last", "7"
        ).code
        == 0
    )
    result = cli("policy", "set", "a", "--server", "")
    assert result.code == 2
    assert_one_line_error(result.err, "--server needs a server id or name")
    assert ok_json(cli, "policy", "show", "a")["selector"] == "k=v"


@pytest.mark.parametrize("url", ["bogus", "mysql://h/x"])
def test_help_of_a_command_needs_no_valid_database_url(cli: CliRunner, url: str) -> None:
    for args in (["policy", "--help"], ["policy", "list", "--help"], ["db", "status", "--help"]):
        result = cli("--db", url, *args)
        assert result.code == 0, (args, result.err)
        assert "Usage:" in result.out
    refused = cli("--db", url, "policy", "list")
    assert refused.code == 2
    assert_one_line_error(refused.err, "database")
