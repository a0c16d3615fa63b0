"""API keys: long-lived bearer tokens (``wwk_…``) acting as their user, capped by a scope."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from wattwatch.domain import Role
from wattwatch.web.deps import Caller, Services

router = APIRouter(prefix="/api/v1/api-keys", tags=["api-keys"])


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Home Assistant"])
    scope: Role | None = Field(None, description="at most your own role (default)")
    expires_days: int | None = Field(None, ge=1, le=3650)


@router.get("")
def list_keys(ww: Services, caller: Caller) -> list[dict[str, Any]]:
    """Your keys (owners: every key of the organisation); never the secrets."""
    return ww.registry.list_api_keys(caller)


@router.post("", status_code=201)
def create_key(body: ApiKeyCreate, ww: Services, caller: Caller) -> dict[str, Any]:
    """A new key; ``key`` is shown only in this answer. Send it as ``Authorization: Bearer``."""
    record, key = ww.registry.create_api_key(caller, body.name, body.scope, body.expires_days)
    return {**record, "key": key}


@router.delete("/{key_id}", status_code=204)
def revoke_key(key_id: int, ww: Services, caller: Caller) -> None:
    """Revoke a key: the next request made with it is refused."""
    ww.registry.revoke_api_key(caller, key_id)
