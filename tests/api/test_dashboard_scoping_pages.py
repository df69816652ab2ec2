"""The dashboard's restores, policy deletion and retention preview pages are scoped as the
API is: another project's restores are not listed, its ids are not found (404), and
deleting its policy deletes nothing."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.api.test_dashboard_scoping import _alpha, _login
from tests.web.conftest import csrf_of


def test_a_beta_user_sees_no_alpha_restore_preview_or_policy_to_delete(api: Api) -> None:
    alpha = _alpha(api)
    policy_id, restore_id = alpha["policy"]["id"], alpha["restore"]["id"]
    backup_id = alpha["run"]["backup_id"]

    _login(api, "alpha-member")
    listing = api.client.get("/restores")
    assert listing.status_code == 200 and f"/restores/{restore_id}" in listing.text
    assert api.client.get(f"/restores/{restore_id}").status_code == 200
    preview = api.client.get(f"/policies/{policy_id}/retention")
    assert preview.status_code == 200 and backup_id in preview.text
    assert api.client.get(f"/policies/{policy_id}/delete").status_code == 200

    _login(api, "beta-member")
    listing = api.client.get("/restores")
    assert listing.status_code == 200
    assert restore_id not in listing.text and backup_id not in listing.text
    for path in (
        f"/restores/{restore_id}",
        f"/policies/{policy_id}/retention",
        "/policies/alpha-db/retention",
        f"/policies/{policy_id}/delete",
        "/policies/alpha-db/delete",
    ):
        assert api.client.get(path).status_code == 404, path
    token = csrf_of(api.client.get("/policies").text)
    for ref in (policy_id, "alpha-db"):
        response = api.client.post(
            f"/policies/{ref}/delete", data={"csrf_token": token}, follow_redirects=False
        )
        assert response.status_code == 404, ref
    assert api.services.store.get_policy(policy_id).name == "alpha-db"

    _login(api, "cloud-admin")  # who acts on every project sees every project's
    assert f"/restores/{restore_id}" in api.client.get("/restores").text
