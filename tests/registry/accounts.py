"""Fast test accounts: one argon2 hash per session and login tokens made directly (argon2 costs
about a second per hash or check on the CI machine; login itself is tested with real calls)."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher

from wattwatch.app import Wattwatch
from wattwatch.domain import Role, now_ms
from wattwatch.registry.service import USER_TOKEN_PREFIX, Principal, hash_secret, new_secret

PASSWORD = "correct-horse-battery"


@functools.cache
def password_hash() -> str:
    return PasswordHasher().hash(PASSWORD)


def account(
    ww: Wattwatch, email: str, role: Role = Role.OWNER, org_id: int | None = None
) -> tuple[Principal, str]:
    """A user (in a new organisation unless ``org_id``) and a login token for it."""
    db = ww.registry.db
    if org_id is None:
        org_id = db.create_org(f"org of {email}")
    user_id = db.create_user(email, password_hash(), org_id, role)
    token = new_secret(USER_TOKEN_PREFIX)
    db.create_auth_token(
        hash_secret(token),
        kind="login",
        user_id=user_id,
        org_id=org_id,
        expires_ms=now_ms() + 3_600_000,
    )
    return Principal(user_id, org_id, role, email), token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
