"""On/off commands to plugs (one, or every plug of a site or area), their audit trail, and
schedules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from wattwatch.control.schedules import ControlScheduler, ScheduleCreate, ScheduleUpdate
from wattwatch.control.service import MAX_TIMEOUT_S, ControlService, Target
from wattwatch.errors import Conflict
from wattwatch.web.deps import Caller, Services

if TYPE_CHECKING:
    from wattwatch.app import Wattwatch

router = APIRouter(prefix="/api/v1", tags=["commands"])

Status = Literal["pending", "ok", "refused", "timeout", "error"]


class CommandRequest(BaseModel):
    action: Literal["on", "off", "toggle"]
    timeout_s: float | None = Field(
        None, gt=0, le=MAX_TIMEOUT_S, description="how long to wait for the answer (default 5)"
    )


class GroupCommandRequest(CommandRequest):
    appliance: str | None = Field(
        None, max_length=120, description="only plugs feeding this appliance (e.g. printer)"
    )


class CommandAnswer(BaseModel):
    id: int = Field(description="the audit record of this command")
    ok: bool
    state: int | None = Field(None, description="relay state the device reported: 1 on, 0 off")
    status: Status
    error: str | None = None
    latency_ms: int | None = None


def _control(ww: Wattwatch) -> ControlService:
    if ww.control is None:
        raise Conflict("commands are not available in this process")
    return ww.control


async def _switch_group(
    ww: Wattwatch, caller: Caller, body: GroupCommandRequest, **scope: int
) -> dict[str, Any]:
    target = Target(**scope, appliance=body.appliance)
    return await _control(ww).group_command(caller, target, body.action, timeout_s=body.timeout_s)


def _schedules(ww: Wattwatch) -> ControlScheduler:
    if ww.schedules is None:
        raise Conflict("schedules are not available in this process")
    return ww.schedules


@router.post(
    "/devices/{device_id}/commands",
    response_model=CommandAnswer,
    responses={504: {"description": "the device did not answer in time (recorded as timeout)"}},
)
async def send_command(
    device_id: int, body: CommandRequest, ww: Services, caller: Caller
) -> CommandAnswer:
    """Switch a plug (admins) and wait for its answer: ``{id, ok, state}``. ``ok`` is false
    when the device refused; 504 when it did not answer within ``timeout_s``."""
    outcome = await _control(ww).command(caller, device_id, body.action, timeout_s=body.timeout_s)
    return CommandAnswer(**{k: outcome.get(k) for k in CommandAnswer.model_fields})


@router.get("/devices/{device_id}/commands")
def device_commands(
    device_id: int,
    ww: Services,
    caller: Caller,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = Query(None, description="page: the smallest id of the last page"),
) -> list[dict[str, Any]]:
    """The audit trail of a device: who switched it, when, how, with what outcome."""
    return _control(ww).list_commands(caller, device_id=device_id, limit=limit, before_id=before_id)


@router.get("/commands")
def all_commands(
    ww: Services,
    caller: Caller,
    group_id: str | None = Query(None, max_length=32),
    status: Status | None = None,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Every command of the organisation, newest first (devices since deleted included)."""
    return _control(ww).list_commands(
        caller, group_id=group_id, status=status, limit=limit, before_id=before_id
    )


@router.get("/commands/{command_id}")
def get_command(command_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    return _control(ww).get_command(caller, command_id)


@router.post("/sites/{site_id}/commands")
async def site_command(
    site_id: int, body: GroupCommandRequest, ww: Services, caller: Caller
) -> dict[str, Any]:
    """Switch every plug of the site (or those feeding ``appliance``) at once; one summary
    ``{group_id, total, ok, refused, timeout, error, results: [...]}``."""
    return await _switch_group(ww, caller, body, site_id=site_id)


@router.post("/areas/{area_id}/commands")
async def area_command(
    area_id: int, body: GroupCommandRequest, ww: Services, caller: Caller
) -> dict[str, Any]:
    """Switch every plug of the area and the areas inside it (or those feeding
    ``appliance``); the same summary as a site command."""
    return await _switch_group(ww, caller, body, area_id=area_id)


# -- schedules ------------------------------------------------------------------------------
@router.get("/schedules")
def list_schedules(ww: Services, caller: Caller) -> list[dict[str, Any]]:
    return _schedules(ww).list_schedules(caller)


@router.post("/schedules", status_code=201)
def create_schedule(body: ScheduleCreate, ww: Services, caller: Caller) -> dict[str, Any]:
    """Switch plugs at set times in the site's timezone, e.g. off at 19:00 and on at 07:00
    on weekdays: ``events: [{action: off, at: "19:00", days: mon-fri}, {action: on, …}]``."""
    return _schedules(ww).create(caller, body)


@router.get("/schedules/{schedule_id}")
def get_schedule(schedule_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    return _schedules(ww).get(caller, schedule_id)


@router.patch("/schedules/{schedule_id}")
def update_schedule(
    schedule_id: int, body: ScheduleUpdate, ww: Services, caller: Caller
) -> dict[str, Any]:
    return _schedules(ww).update(caller, schedule_id, body)


@router.delete("/schedules/{schedule_id}", status_code=204)
def delete_schedule(schedule_id: int, ww: Services, caller: Caller) -> None:
    _schedules(ww).delete(caller, schedule_id)


@router.get("/schedules/{schedule_id}/runs")
def schedule_runs(
    schedule_id: int,
    ww: Services,
    caller: Caller,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Each time the schedule fired (or was missed): due time, status, every device's outcome."""
    return _schedules(ww).runs(caller, schedule_id, limit=limit, before_id=before_id)
