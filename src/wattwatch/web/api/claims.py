"""Claiming a pre-registered device into an organisation, and the device's first contact."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from wattwatch.web.deps import Caller, Services, public

router = APIRouter(prefix="/api/v1", tags=["claims"])


class ClaimRequest(BaseModel):
    claim_code: str = Field(min_length=1, max_length=100, examples=["7KQ2-M9XD-4TPA-H3WE"])
    site_id: int
    area_id: int | None = None
    name: str | None = Field(None, min_length=1, max_length=200, description="rename it")


class ProvisionRequest(BaseModel):
    uid: str = Field(min_length=1, max_length=64)
    claim_code: str = Field(min_length=1, max_length=100)


class Provisioned(BaseModel):
    uid: str
    token: str = Field(description="the device token; handed out only once")
    protocol: str
    topic: str


@router.post("/claims", status_code=201)
def claim(body: ClaimRequest, ww: Services, caller: Caller) -> dict[str, Any]:
    """Bind the unclaimed device with this claim code to your organisation and site
    (admins). The device then fetches its token with ``POST /api/v1/provision``."""
    device = ww.registry.claim_device(
        caller, body.claim_code, body.site_id, body.area_id, body.name
    )
    return {"device": public(device)}


@router.post("/provision", response_model=Provisioned)
def provision(body: ProvisionRequest, ww: Services) -> Provisioned:
    """Called by the device itself with its uid and claim code: its token, once, after a
    user claimed it. 409 while it is not claimed (retry later) and after the token was
    handed out; 401 for an unknown uid or a wrong code."""
    return Provisioned(**ww.registry.provision(body.uid, body.claim_code))
