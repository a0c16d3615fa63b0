"""Areas: the rooms, floors and lines of a site, nested (a floor holds rooms)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from wattwatch.web.deps import Caller, Services, public

router = APIRouter(prefix="/api/v1", tags=["areas"])


class AreaCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Floor 2"])
    kind: str | None = Field(None, max_length=32, examples=["floor"])
    parent_id: int | None = Field(None, description="the area this one is inside")


class AreaUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    kind: str | None = Field(None, max_length=32)
    parent_id: int | None = None


@router.get("/sites/{site_id}/areas")
def list_areas(site_id: int, ww: Services, caller: Caller) -> list[dict[str, Any]]:
    """Every area of the site with its ``path`` ("Floor 2/Room 201") and ``depth``."""
    return ww.registry.list_areas(caller, site_id)


@router.post("/sites/{site_id}/areas", status_code=201)
def create_area(site_id: int, body: AreaCreate, ww: Services, caller: Caller) -> dict[str, Any]:
    return ww.registry.create_area(caller, site_id, body.name, body.kind, body.parent_id)


@router.get("/areas/{area_id}")
def get_area(area_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    """The area and the devices in it or in its sub-areas."""
    area = ww.registry.get_area(caller, area_id)
    inside = ww.registry.area_subtree(caller, area_id)
    area["devices"] = [
        public(d) for d in ww.registry.db.select_devices(caller.org_id, area_ids=inside)
    ]
    return area


@router.patch("/areas/{area_id}")
def update_area(area_id: int, body: AreaUpdate, ww: Services, caller: Caller) -> dict[str, Any]:
    return ww.registry.update_area(caller, area_id, body.model_dump(exclude_unset=True))


@router.delete("/areas/{area_id}", status_code=204)
def delete_area(area_id: int, ww: Services, caller: Caller) -> None:
    """Sub-areas are deleted with it; its devices stay on the site, without an area."""
    ww.registry.delete_area(caller, area_id)
