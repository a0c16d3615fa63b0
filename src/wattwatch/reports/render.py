"""Report output formats: JSON, HTML (inline SVG charts), PDF (weasyprint), CSV and XLSX tables."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from wattwatch.errors import InvalidInput
from wattwatch.reports import charts
from wattwatch.reports.findings import kwh, money, pct

TEMPLATES = Path(__file__).parent / "templates"


class ReportFormat(StrEnum):
    JSON = "json"
    HTML = "html"
    PDF = "pdf"
    CSV = "csv"
    XLSX = "xlsx"


MEDIA_TYPES: dict[ReportFormat, str] = {
    ReportFormat.JSON: "application/json",
    ReportFormat.HTML: "text/html; charset=utf-8",
    ReportFormat.PDF: "application/pdf",
    ReportFormat.CSV: "text/csv; charset=utf-8",
    ReportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class FormatUnavailable(InvalidInput):
    """The output format needs an optional dependency that is not installed."""

    code = "format_unavailable"


@dataclass(frozen=True, slots=True)
class Rendered:
    content: bytes
    media_type: str
    filename: str


# The tables a report has, as (column, getter) lists; CSV gives one, XLSX all of them.
def _tables(report: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    b = report["breakdown"]

    def rows(items: list[dict[str, Any]], cols: list[str]) -> list[list[Any]]:
        return [[item.get(c) for c in cols] for item in items]

    def listify(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
        return [{**i, key: " ".join(i.get(key) or [])} for i in items]

    daily_cols = ["date", "hours", "energy_kwh", "cost", "peak_kw", "coverage", "status"]
    hourly_cols = ["ts", "local", "energy_kwh", "avg_kw", "coverage"]
    load_cols = [
        "name",
        "energy_kwh",
        "share",
        "cost",
        "outside_hours_kwh",
        "outside_hours_share",
        "peak_kw",
        "coverage",
        "submeter",
    ]
    device_cols = ["id", "area", *load_cols, "missing_days"]
    channel_cols = [
        "id",
        "device",
        "channel",
        "appliance",
        "submeter",
        "energy_kwh",
        "share",
        "cost",
        "outside_hours_share",
        "peak_kw",
        "coverage",
        "missing_days",
    ]
    gap_cols = ["device", "channel", "from_local", "to_local", "hours", "from_ts", "to_ts"]
    return {
        "daily": (daily_cols, rows(report["daily"], daily_cols)),
        "hourly": (hourly_cols, rows(report["hourly"], hourly_cols)),
        "devices": (device_cols, rows(listify(b["devices"], "missing_days"), device_cols)),
        "areas": (["id", *load_cols], rows(b["areas"], ["id", *load_cols])),
        "channels": (channel_cols, rows(listify(b["channels"], "missing_days"), channel_cols)),
        "appliances": (load_cols, rows(b["appliances"], load_cols)),
        "gaps": (gap_cols, rows(report["completeness"]["gaps"], gap_cols)),
    }


CSV_TABLES = ("daily", "hourly", "devices", "areas", "channels", "appliances", "gaps")


def _filename(report: dict[str, Any], ext: str, table: str | None = None) -> str:
    meta = report["report"]
    scope, period = meta["scope"], meta["period"]
    extra = f"-{table}" if table else ""
    return f"wattwatch-{scope['kind']}{scope['id']}-{period['kind']}-{period['start']}{extra}.{ext}"


def render_report(
    report: dict[str, Any], fmt: ReportFormat | str, table: str | None = None
) -> Rendered:
    try:
        fmt = ReportFormat(fmt)
    except ValueError:
        known = ", ".join(f.value for f in ReportFormat)
        raise InvalidInput(f"unknown report format {fmt!r}; use one of {known}") from None
    if table is not None and fmt is not ReportFormat.CSV:
        raise InvalidInput("table= applies to csv only (xlsx holds every table)")
    renderers: dict[ReportFormat, Callable[[], bytes]] = {
        ReportFormat.JSON: lambda: orjson.dumps(report),
        ReportFormat.HTML: lambda: render_html(report).encode(),
        ReportFormat.PDF: lambda: render_pdf(report),
        ReportFormat.CSV: lambda: render_csv(report, table or "daily"),
        ReportFormat.XLSX: lambda: render_xlsx(report),
    }
    content = renderers[fmt]()
    return Rendered(
        content,
        MEDIA_TYPES[fmt],
        _filename(report, fmt.value, table if fmt is ReportFormat.CSV else None),
    )


def render_csv(report: dict[str, Any], table: str = "daily") -> bytes:
    tables = _tables(report)
    if table not in tables:
        raise InvalidInput(f"unknown table {table!r}; use one of {', '.join(CSV_TABLES)}")
    cols, rows = tables[table]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue().encode()


def render_xlsx(report: dict[str, Any]) -> bytes:
    try:
        from openpyxl import Workbook
    except ImportError:
        raise FormatUnavailable(
            "XLSX output needs openpyxl: pip install 'wattwatch[xlsx]'"
        ) from None
    wb = Workbook()
    summary = wb.active
    assert summary is not None
    summary.title = "summary"
    s = report["summary"]
    meta = report["report"]
    for row in (
        ("scope", f"{meta['scope']['kind']} {meta['scope']['name']}"),
        ("period", meta["period"]["label"]),
        ("energy_kwh", s["energy_kwh"]),
        ("cost_total", s["cost"]["total"]),
        ("currency", meta["currency"]),
        ("peak_kw", (s["peak"] or {}).get("kw")),
        ("peak_at", (s["peak"] or {}).get("local")),
        ("base_load_kw", s["base_load_kw"]),
        ("outside_hours_share", s["business_hours"]["outside_share"]),
        ("co2_kg", s["co2_kg"]),
        ("coverage", report["completeness"]["coverage"]),
    ):
        summary.append(list(row))
    summary.append([])
    for f in report["findings"]:
        summary.append(["finding", f["text"]])
    for name, (cols, rows) in _tables(report).items():
        sheet = wb.create_sheet(name)
        sheet.append(cols)
        for values in rows:
            sheet.append(values)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["kwh"] = kwh
    env.filters["pct"] = pct
    env.filters["num"] = lambda v, d=1: "–" if v is None else f"{v:,.{d}f}"
    return env


def _as_image(svg: str) -> str:
    """An SVG as an ``<img>`` with a data URI: WeasyPrint then parses it as XML in one go
    instead of tokenising and styling every node as HTML (the PDF renders about 2x faster)."""
    data = base64.b64encode(svg.encode()).decode()
    return f'<img alt="" style="width:100%" src="data:image/svg+xml;base64,{data}">'


def render_html(report: dict[str, Any], *, images: bool = False) -> str:
    """The report page; ``images`` embeds the charts as data-URI images (for the PDF)."""
    meta = report["report"]
    tz = meta["site"]["timezone"]
    b = report["breakdown"]
    svg = {
        "daily": charts.daily_chart(report["daily"]),
        "profile": charts.profile_chart(
            report["profile"]["weekday_kw"], report["profile"]["weekend_kw"]
        ),
        "heatmap": charts.heatmap_chart(report["heatmap_kw"], [d["date"] for d in report["daily"]]),
        "devices": charts.breakdown_chart(b["devices"]),
        "areas": charts.breakdown_chart(b["areas"]) if len(b["areas"]) > 1 else "",
    }
    generated = datetime.fromtimestamp(meta["generated_ts"] / 1000, ZoneInfo(tz))
    return (
        _env()
        .get_template("report.html.j2")
        .render(
            r=report,
            meta=meta,
            s=report["summary"],
            comp=report["completeness"],
            # Chart SVGs are built with escape() around every piece of text.
            charts={k: Markup(_as_image(v) if images and v else v) for k, v in svg.items()},
            money=lambda v: money(v, meta["currency"]),
            generated=generated.strftime("%d %b %Y %H:%M %Z"),
        )
    )


def render_pdf(report: dict[str, Any]) -> bytes:
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: the pango/cairo system libraries
        raise FormatUnavailable(
            "PDF output needs WeasyPrint: pip install 'wattwatch[pdf]' "
            f"(and the Pango library of your system): {exc}"
        ) from None
    html = render_html(report, images=True)
    pdf: bytes = HTML(string=html, base_url=str(TEMPLATES)).write_pdf()
    return pdf
