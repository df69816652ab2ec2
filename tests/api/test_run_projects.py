"""Every way a run is made gives it a project: a policy's run its policy's, ``backup now`` the
project the cloud says the server is in (so that a tenant sees its own on-demand runs)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from stackback.engine.scheduler import Scheduler
from stackback.policy import Run, RunState
from stackback.records import BackupFilter, RunFilter
from tests.api.conftest import Api, nightly
from tests.web.conftest import csrf_of

SIM_PROJECT = "demo"
"""The simulator's project the test servers are in (``tests.cli.conftest.sim``)."""


def _runs(api: Api) -> dict[str, Run]:
    return {run.id: run for run in api.services.store.list_runs(RunFilter(limit=10_000))}


def test_every_way_a_run_is_made_gives_it_a_project(api: Api) -> None:
    api.sim.cloud.create_server("web-1")
    api.sim.cloud.create_server("web-2")
    store = api.services.store
    created = api.ok("alpha-member", "POST", "/v1/policies", 201, json=nightly("alpha", "web-1"))
    made: dict[str, set[str]] = {}
    seen: set[str] = set()

    def record(path: str) -> None:
        new = set(_runs(api)) - seen
        assert new, f"{path}: made no run"
        made[path] = new
        seen.update(new)

    api.ok("alpha-member", "POST", f"/v1/policies/{created['id']}/run", 202)
    record("API policy run")

    page = api.client.get("/login")
    login = {"token": "alpha-member", "csrf_token": csrf_of(page.text)}
    assert api.client.post("/login", data=login, follow_redirects=False).status_code == 303
    form = {"csrf_token": csrf_of(api.client.get("/policies").text)}
    posted = api.client.post(f"/policies/{created['id']}/run", data=form, follow_redirects=False)
    assert posted.status_code == 303, posted.text
    record("dashboard run now")

    api.services.policies.run_now(created["id"])  # the CLI's and the openstack plugin's
    record("policy run")

    policy = store.get_policy(created["id"])
    due = api.services.clock.now() + timedelta(days=3)
    Scheduler(store, api.services.clouds).tick(due)  # a pending run, and missed ones before it
    record("scheduler")
    store.update_policy(replace(policy, enabled=False), [None], now=due + timedelta(days=2))
    record("disabled after downtime (cancelled occurrences)")
    assert {run.state for run in _runs(api).values()} >= {RunState.MISSED, RunState.CANCELLED}

    backups = api.services.backups
    online = backups.backup_now("web-2", label=None, keep_last=None, cloud=api.sim.spec)
    record("backup now")
    assert online.project == SIM_PROJECT  # at once, from the server as the cloud reports it
    offline = backups.backup_now(
        "web-2", label="pre", keep_last=None, cloud=api.sim.spec, offline=True
    )
    record("backup now --offline")
    assert offline.project is None  # no cloud asked yet: it learns its project when it starts
    finished = api.services.runs.wait(offline.id, timeout=30)
    assert (finished.state, finished.project) == (RunState.SUCCEEDED, SIM_PROJECT)
    (backup,) = store.list_backups(BackupFilter(label="pre"))
    assert backup.project == SIM_PROJECT

    runs = _runs(api)
    projects = {path: {runs[run_id].project for run_id in ids} for path, ids in made.items()}
    assert projects == {
        path: {SIM_PROJECT if path.startswith("backup now") else "alpha"} for path in made
    }
    assert [run for run in runs.values() if not run.project] == []

    # a member of the servers' project sees its on-demand runs and their backups; alpha not
    assert api.ok("demo-member", "GET", f"/v1/runs/{online.id}")["project"] == SIM_PROJECT
    listed = api.ok("demo-member", "GET", "/v1/runs")["items"]
    assert {run["id"] for run in listed} == {online.id, offline.id}
    assert api.ok("demo-member", "GET", f"/v1/backups/{backup.id}")["id"] == backup.id
    assert api.as_("alpha-member", "GET", f"/v1/runs/{online.id}").status_code == 404
