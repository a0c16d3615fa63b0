"""Login, logout, password change and who-am-I."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from wattwatch.web.deps import Caller, Services

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginRequest(BaseModel):
    email: str = Field(max_length=320, examples=["owner@localhost"])
    password: str = Field(max_length=1024)


class LoginResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    password_change_required: bool = False


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=10, max_length=1024)


@router.post("/login", response_model=LoginResponse)
def login(body: LoginRequest, ww: Services) -> LoginResponse:
    token, user = ww.registry.login(body.email, body.password)
    return LoginResponse(
        access_token=token, password_change_required=bool(user["must_change_password"])
    )


@router.post("/password", status_code=204)
def change_password(body: PasswordChange, ww: Services, caller: Caller) -> None:
    ww.registry.change_password(caller, body.current_password, body.new_password)


@router.get("/me")
def me(caller: Caller) -> dict[str, Any]:
    return {
        "user_id": caller.user_id,
        "email": caller.email,
        "org_id": caller.org_id,
        "role": str(caller.role),
    }
