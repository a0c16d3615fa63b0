"""Users of the organisation and their roles (owner, admin, viewer)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from wattwatch.domain import Role
from wattwatch.web.deps import Caller, Services

router = APIRouter(prefix="/api/v1/users", tags=["users"])


class UserCreate(BaseModel):
    email: str = Field(max_length=320, examples=["facility@example.com"])
    role: Role = Role.VIEWER
    password: str | None = Field(
        None,
        min_length=10,
        max_length=1024,
        description="default: a one-time password, returned once, to change at first login",
    )


class UserUpdate(BaseModel):
    role: Role


@router.get("")
def list_users(ww: Services, caller: Caller) -> list[dict[str, Any]]:
    return ww.registry.list_users(caller)


@router.post("", status_code=201)
def create_user(body: UserCreate, ww: Services, caller: Caller) -> dict[str, Any]:
    """Add a user (owners only)."""
    user, one_time = ww.registry.invite_user(caller, body.email, body.role, body.password)
    return {**user, "one_time_password": one_time}


@router.get("/{user_id}")
def get_user(user_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    return ww.registry.get_user(caller, user_id)


@router.patch("/{user_id}")
def update_user(user_id: int, body: UserUpdate, ww: Services, caller: Caller) -> dict[str, Any]:
    """Change a user's role (owners only; the last owner stays an owner)."""
    return ww.registry.set_user_role(caller, user_id, body.role)


@router.delete("/{user_id}", status_code=204)
def remove_user(user_id: int, ww: Services, caller: Caller) -> None:
    """Remove a user from the organisation; their tokens and API keys stop at once."""
    ww.registry.remove_user(caller, user_id)
