"""Reports of a site, area or device (JSON/HTML/PDF/CSV/XLSX), report settings and schedules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, Query, Response

from wattwatch.errors import ConfigError
from wattwatch.reports.periods import PeriodKind, parse_day
from wattwatch.reports.render import ReportFormat
from wattwatch.reports.schedule import ReportScheduler, ScheduleCreate
from wattwatch.reports.service import ReportService
from wattwatch.reports.settings import ReportSettings
from wattwatch.web.deps import Caller, Services

if TYPE_CHECKING:
    from wattwatch.app import Wattwatch

router = APIRouter(prefix="/api/v1", tags=["reports"])

START = Query(None, description="a day in the period, YYYY-MM-DD; default the last complete one")
END = Query(None, description="last day (inclusive) of a custom period, YYYY-MM-DD")
FORMAT = Query(ReportFormat.JSON, description="json, html, pdf, csv or xlsx")
HTML_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
TABLE = Query(None, description="csv only: daily, hourly, devices, areas, channels, gaps")


def _service(ww: Wattwatch) -> ReportService:
    if ww.reports is None:
        raise ConfigError("reports are not set up in this process")
    return ww.reports


def _scheduler(ww: Wattwatch) -> ReportScheduler:
    if ww.report_scheduler is None:
        raise ConfigError("report schedules are not set up in this process")
    return ww.report_scheduler


class ReportQuery(NamedTuple):
    """What a report request asks besides its scope and period (the same for every scope)."""

    start: str | None
    end: str | None
    fmt: ReportFormat
    table: str | None


def _report_query(
    start: str | None = START,
    end: str | None = END,
    format: ReportFormat = FORMAT,
    table: str | None = TABLE,
) -> ReportQuery:
    return ReportQuery(start, end, format, table)


ReportQueryParams = Annotated[ReportQuery, Depends(_report_query)]


def _answer(
    ww: Wattwatch, caller: Caller, scope: dict[str, int], period: PeriodKind, query: ReportQuery
) -> Response:
    service = _service(ww)
    report = service.build(
        caller.org_id,
        **scope,
        period=period,
        start=parse_day(query.start),
        end=parse_day(query.end, "end"),
    )
    fmt = query.fmt
    rendered = service.render(report, fmt, query.table)
    headers = {}
    if fmt is not ReportFormat.JSON:
        how = "inline" if fmt is ReportFormat.HTML else "attachment"
        headers["Content-Disposition"] = f'{how}; filename="{rendered.filename}"'
    if fmt is ReportFormat.HTML:
        # The report is self-contained: its own styles, inline SVG, no script, nothing fetched.
        headers["Content-Security-Policy"] = HTML_POLICY
    return Response(rendered.content, media_type=rendered.media_type, headers=headers)


@router.get("/sites/{site_id}/reports/{period}", response_class=Response)
def site_report(
    site_id: int, period: PeriodKind, ww: Services, caller: Caller, query: ReportQueryParams
) -> Response:
    """The site's report for a calendar week, month, quarter (or custom range)."""
    return _answer(ww, caller, {"site_id": site_id}, period, query)


@router.get("/areas/{area_id}/reports/{period}", response_class=Response)
def area_report(
    area_id: int, period: PeriodKind, ww: Services, caller: Caller, query: ReportQueryParams
) -> Response:
    """An area's report (the area and the areas inside it)."""
    return _answer(ww, caller, {"area_id": area_id}, period, query)


@router.get("/devices/{device_id}/reports/{period}", response_class=Response)
def device_report(
    device_id: int, period: PeriodKind, ww: Services, caller: Caller, query: ReportQueryParams
) -> Response:
    """A device's report, in the timezone and tariff of its site."""
    return _answer(ww, caller, {"device_id": device_id}, period, query)


@router.get("/sites/{site_id}/report-settings")
def get_report_settings(site_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    """Business hours and CO2 factor used by the site's reports."""
    return _service(ww).get_settings(caller.org_id, site_id)


@router.put("/sites/{site_id}/report-settings")
def put_report_settings(
    site_id: int, body: ReportSettings, ww: Services, caller: Caller
) -> dict[str, Any]:
    return _service(ww).put_settings(caller, site_id, body.model_dump())


@router.get("/report-schedules")
def list_schedules(ww: Services, caller: Caller) -> list[dict[str, Any]]:
    return _scheduler(ww).store.list_schedules(caller.org_id)


@router.post("/report-schedules", status_code=201)
def create_schedule(body: ScheduleCreate, ww: Services, caller: Caller) -> dict[str, Any]:
    """E.g. ``{"site_id": 1, "period": "week", "cron": "0 8 * * 1", "recipients": [...]}``."""
    return _scheduler(ww).create(caller, body, created_by=caller.email)


@router.get("/report-schedules/{schedule_id}")
def get_schedule(schedule_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    return _scheduler(ww).store.get_schedule(caller.org_id, schedule_id)


@router.delete("/report-schedules/{schedule_id}", status_code=204)
def delete_schedule(schedule_id: int, ww: Services, caller: Caller) -> None:
    _scheduler(ww).delete(caller, schedule_id)


@router.get("/report-schedules/{schedule_id}/deliveries")
def list_deliveries(schedule_id: int, ww: Services, caller: Caller) -> list[dict[str, Any]]:
    """What was sent (or failed) for this schedule, newest first."""
    scheduler = _scheduler(ww)
    scheduler.store.get_schedule(caller.org_id, schedule_id)
    return scheduler.store.list_deliveries(caller.org_id, schedule_id)


@router.post("/report-schedules/{schedule_id}/send")
async def send_schedule_now(
    schedule_id: int, ww: Services, caller: Caller
) -> dict[str, Any] | None:
    """Send the latest complete period now (nothing when it was sent already)."""
    return await _scheduler(ww).send_now(caller, schedule_id)
