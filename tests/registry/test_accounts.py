"""Users and roles (owners manage users; the last owner stays), API keys with a scope, and
revocation that takes effect on the next request."""

from __future__ import annotations

from tests.registry.accounts import bearer
from tests.registry.conftest import Org

from wattwatch.domain import Role


def test_owners_manage_users(org: Org) -> None:
    api = org.api
    admin = org.member("admin@a.example", Role.ADMIN)
    r = api.post("/api/v1/users", json={"email": "new@a.example", "role": "viewer"}, headers=admin)
    assert r.status_code == 403
    r = api.post("/api/v1/users", json={"email": "Facility@A.example", "role": "admin"})
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["email"] == "facility@a.example" and user["role"] == "admin"
    one_time = user["one_time_password"]
    assert one_time and len(one_time) >= 12
    login = api.post(
        "/api/v1/auth/login", json={"email": "facility@a.example", "password": one_time}
    )
    assert login.status_code == 200 and login.json()["password_change_required"] is True
    token = bearer(login.json()["access_token"])
    assert api.get("/api/v1/auth/me", headers=token).json()["role"] == "admin"
    assert api.post("/api/v1/users", json={"email": "x"}).status_code == 422
    assert api.post("/api/v1/users", json={"email": "facility@a.example"}).status_code == 409
    assert {u["email"] for u in api.get("/api/v1/users").json()} >= {"facility@a.example"}
    viewer = org.member("viewer@a.example", Role.VIEWER)
    assert api.get("/api/v1/users", headers=viewer).status_code == 403

    # A role change applies to the next request of a logged-in user.
    r = api.patch(f"/api/v1/users/{user['id']}", json={"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert api.get("/api/v1/auth/me", headers=token).json()["role"] == "viewer"
    assert api.post("/api/v1/sites", json={"name": "x"}, headers=token).status_code == 403
    # The last owner cannot step down or leave.
    me = org.owner.user_id
    r = api.patch(f"/api/v1/users/{me}", json={"role": "admin"})
    assert r.status_code == 409 and "at least one owner" in r.json()["error"]["message"]
    assert api.delete(f"/api/v1/users/{me}").status_code == 409
    # Removed: their token stops at once.
    assert api.delete(f"/api/v1/users/{user['id']}").status_code == 204
    assert api.get("/api/v1/auth/me", headers=token).status_code == 401
    assert api.get(f"/api/v1/users/{user['id']}").status_code == 404


def test_api_keys_are_scoped_and_revocable(org: Org) -> None:
    api = org.api
    admin = org.member("admin@a.example", Role.ADMIN)
    r = api.post("/api/v1/api-keys", json={"name": "too much", "scope": "owner"}, headers=admin)
    assert r.status_code == 403
    r = api.post("/api/v1/api-keys", json={"name": "Home Assistant"}, headers=admin)
    assert r.status_code == 201, r.text
    made = r.json()
    key = made["key"]
    assert (
        key.startswith("wwk_") and made["scope"] == "admin" and made["email"] == "admin@a.example"
    )
    me = api.get("/api/v1/auth/me", headers=bearer(key)).json()
    assert me["role"] == "admin" and me["email"] == "admin@a.example"
    listed = api.get("/api/v1/api-keys", headers=admin).json()
    assert [k["name"] for k in listed] == ["Home Assistant"]
    assert all("key" not in k and "token_hash" not in k for k in listed)
    # Owners see every key; others only theirs, and cannot revoke someone else's.
    api.post("/api/v1/api-keys", json={"name": "owner's", "scope": "viewer"})
    assert len(api.get("/api/v1/api-keys").json()) == 2
    assert len(api.get("/api/v1/api-keys", headers=admin).json()) == 1
    owners_key = next(k for k in api.get("/api/v1/api-keys").json() if k["name"] == "owner's")
    assert api.delete(f"/api/v1/api-keys/{owners_key['id']}", headers=admin).status_code == 404
    # A viewer-scoped key of the owner reads but cannot write.
    viewer_key = api.post("/api/v1/api-keys", json={"name": "tv", "scope": "viewer"}).json()["key"]
    assert api.get("/api/v1/sites", headers=bearer(viewer_key)).status_code == 200
    assert (
        api.post("/api/v1/sites", json={"name": "x"}, headers=bearer(viewer_key)).status_code == 403
    )
    # Revoked: the next request with it is refused.
    assert api.delete(f"/api/v1/api-keys/{made['id']}", headers=admin).status_code == 204
    assert api.get("/api/v1/auth/me", headers=bearer(key)).status_code == 401
    # Expired keys stop too.
    short = api.post("/api/v1/api-keys", json={"name": "short", "expires_days": 1}).json()
    from sqlalchemy import update

    from wattwatch.store.schema import auth_tokens

    with org.ww.store.engine.begin() as conn:
        conn.execute(
            update(auth_tokens).where(auth_tokens.c.id == short["id"]).values(expires_ms=1)
        )
    assert api.get("/api/v1/auth/me", headers=bearer(short["key"])).status_code == 401
