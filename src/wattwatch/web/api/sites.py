"""Sites: name, timezone, tariff; their energy and cost."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from wattwatch.domain import Interval, now_ms
from wattwatch.errors import InvalidInput
from wattwatch.tariffs import Tariff
from wattwatch.web.deps import Caller, Services, parse_time

router = APIRouter(prefix="/api/v1/sites", tags=["sites"])


class SiteCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Head office"])
    timezone: str = Field("UTC", max_length=64, examples=["Europe/Madrid"])
    tariff: Tariff = Field(default_factory=Tariff)
    address: str | None = Field(None, max_length=500)


class SiteUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    timezone: str | None = Field(None, max_length=64)
    tariff: Tariff | None = None
    address: str | None = Field(None, max_length=500)


@router.get("")
def list_sites(ww: Services, caller: Caller) -> list[dict[str, Any]]:
    return ww.registry.db.list_sites(caller.org_id)


@router.post("", status_code=201)
def create_site(body: SiteCreate, ww: Services, caller: Caller) -> dict[str, Any]:
    return ww.registry.create_site(
        caller, body.name, body.timezone, body.tariff.model_dump(), body.address
    )


@router.get("/{site_id}")
def get_site(site_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    return ww.registry.db.get_site(caller.org_id, site_id)


@router.patch("/{site_id}")
def update_site(site_id: int, body: SiteUpdate, ww: Services, caller: Caller) -> dict[str, Any]:
    """Change name, timezone, address (admins) or tariff (a billing setting: owners)."""
    values = body.model_dump(exclude_unset=True)
    if "tariff" in values and values["tariff"] is None:
        raise InvalidInput("tariff cannot be null")
    return ww.registry.update_site(caller, site_id, values)


@router.delete("/{site_id}", status_code=204)
def delete_site(site_id: int, ww: Services, caller: Caller) -> None:
    """Delete a site with its areas; its devices stay, without a site."""
    ww.registry.delete_site(caller, site_id)


@router.get("/{site_id}/energy")
def site_energy(
    site_id: int,
    ww: Services,
    caller: Caller,
    from_: str | None = Query(None, alias="from", description="ISO 8601 or epoch ms"),
    to: str | None = Query(None, description="ISO 8601 or epoch ms; default now"),
    interval: Interval = Interval.DAY,
) -> dict[str, Any]:
    """Energy used (Wh) and its cost per interval in the site's timezone and tariff."""
    end = parse_time(to, now_ms())
    start = parse_time(from_, end - 30 * 86_400_000)
    return ww.queries.site_energy(
        caller.org_id, site_id, from_ms=start, to_ms=end, interval=interval
    )
