"""Outbound webhooks: subscribe a URL to events; inspect and replay dead letters (DESIGN §5)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from wattwatch.errors import WattwatchError
from wattwatch.hooks.service import MIN_SECRET_LENGTH, WebhookService
from wattwatch.web.deps import Caller, Services

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


class WebhookCreate(BaseModel):
    url: str = Field(max_length=2000, examples=["https://example.com/wattwatch"])
    events: list[str] = Field(
        min_length=1, max_length=20, examples=[["alert.raised", "alert.cleared"]]
    )
    secret: str | None = Field(
        None,
        min_length=MIN_SECRET_LENGTH,
        max_length=200,
        description="signs each delivery; generated (and shown once) when left out",
    )


def _webhooks(ww: Any) -> WebhookService:
    if ww.webhooks is None:
        raise WattwatchError("webhooks are not configured")
    return ww.webhooks  # type: ignore[no-any-return]


@router.get("")
def list_webhooks(ww: Services, caller: Caller) -> list[dict[str, Any]]:
    return _webhooks(ww).list_webhooks(caller)


@router.post("", status_code=201)
def create_webhook(body: WebhookCreate, ww: Services, caller: Caller) -> dict[str, Any]:
    """Subscribe; the answer carries the secret (the only time it is shown)."""
    hook, secret = _webhooks(ww).create(caller, body.url, body.events, body.secret)
    return {**hook, "secret": secret}


@router.get("/dead-letters")
def dead_letters(
    ww: Services,
    caller: Caller,
    state: Annotated[str | None, Query(pattern="^(dead|replaying|delivered)$")] = None,
    limit: int = Query(1000, ge=1, le=10_000),
) -> list[dict[str, Any]]:
    """Deliveries that failed every retry (webhook, email, MQTT)."""
    return _webhooks(ww).dead_letters(caller, state, limit)


@router.post("/dead-letters/{letter_id}/replay", status_code=202)
def replay(letter_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    """Deliver the same bytes again with a fresh retry schedule."""
    return _webhooks(ww).replay(caller, letter_id)


@router.get("/{webhook_id}")
def get_webhook(webhook_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    return _webhooks(ww).get(caller, webhook_id)


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: int, ww: Services, caller: Caller) -> None:
    _webhooks(ww).delete(caller, webhook_id)


@router.post("/{webhook_id}/ping", status_code=202)
def ping(webhook_id: int, ww: Services, caller: Caller) -> dict[str, str]:
    """Send a signed ``ping`` event to check the receiver."""
    _webhooks(ww).ping(caller, webhook_id)
    return {"status": "queued"}
