"""Report outputs: the PDF rendered to PNG has pages and drawn charts; HTML, CSV and XLSX."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.reports.conftest import Month

from wattwatch.errors import InvalidInput
from wattwatch.reports import render
from wattwatch.reports.render import FormatUnavailable, render_report

# The chart blue, as RGB, and a tolerance for anti-aliasing.
BAR_RGB = (0x1F, 0x5F, 0xA8)


@pytest.fixture(scope="module")
def october(month: Month) -> dict[str, Any]:
    assert month.ww.reports is not None
    return month.ww.reports.build(
        month.owner.org_id, site_id=month.site["id"], period="month", start=date(2026, 10, 1)
    )


def bar_pixels(png: Path, box: tuple[float, float, float, float] = (0, 0, 1, 1)) -> int:
    """Pixels of the chart blue inside ``box`` (fractions of width and height)."""
    from PIL import Image

    with Image.open(png) as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    h, w, _ = rgb.shape
    crop = rgb[int(box[1] * h) : int(box[3] * h), int(box[0] * w) : int(box[2] * w)]
    return int((np.abs(crop - np.array(BAR_RGB)).max(axis=2) <= 6).sum())


def blue_pixels(png: Path) -> int:
    """Pixels of any chart blue (blue well above red), the heatmap's included."""
    from PIL import Image

    with Image.open(png) as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    return int((rgb[:, :, 2] - rgb[:, :, 0] > 40).sum())


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils")
def test_pdf_renders_pages_with_charts(october: dict[str, Any], tmp_path: Path) -> None:
    pdf = render_report(october, "pdf")
    assert pdf.media_type == "application/pdf" and pdf.content.startswith(b"%PDF")
    assert pdf.filename.endswith("-month-2026-10-01.pdf")
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf.content)
    subprocess.run(["pdftoppm", "-png", "-r", "50", path, tmp_path / "page"], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3
    # Page 1: KPI figures in blue plus the daily bar chart in its lower half.
    assert bar_pixels(pages[0], (0, 0.5, 1, 1)) > 2000
    # Page 2: the load profile and the power heatmap, drawn in blues.
    assert blue_pixels(pages[1]) > 10_000
    text = subprocess.run(
        ["pdftotext", "-layout", path, "-"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{october['summary']['energy_kwh']:,.0f} kWh" in text
    assert "Findings" in text and "Energy per day" in text and "Data completeness" in text
    assert "Printers used" in text


def test_empty_report_still_renders(month: Month) -> None:
    assert month.ww.reports is not None
    report = month.ww.reports.build(
        month.owner.org_id, site_id=month.site["id"], period="week", start=date(2025, 1, 6)
    )
    assert report["summary"]["energy_kwh"] == 0
    assert all(d["status"] == "missing" for d in report["daily"])
    html = render_report(report, "html").content.decode()
    assert "no data" in html and "No energy use was recorded" in html


def test_html_is_self_contained_and_escaped(october: dict[str, Any]) -> None:
    evil = {
        **october,
        "report": {**october["report"], "scope": {"kind": "site", "id": 1, "name": "<script>x"}},
    }
    html = render_report(evil, "html").content.decode()
    assert "<script>x" not in html and "&lt;script&gt;x" in html
    assert html.count("<svg") >= 4
    # No CDN, nothing fetched: no scripts, stylesheets or images by URL.
    for fetch in ("<script", "<link", "src=", "href=", "@import", "url(http"):
        assert fetch not in html
    assert "2026-10-25" in html


def test_csv_tables(october: dict[str, Any]) -> None:
    daily = render_report(october, "csv")
    assert daily.media_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(daily.content.decode())))
    assert len(rows) == 31 and rows[24]["date"] == "2026-10-25" and rows[24]["hours"] == "25.0"
    devices = list(
        csv.DictReader(io.StringIO(render_report(october, "csv", "devices").content.decode()))
    )
    assert {r["name"] for r in devices} >= {"HVAC", "Fridge"}
    hourly = render_report(october, "csv", "hourly").content.decode().splitlines()
    assert len(hourly) == 1 + 745
    with pytest.raises(InvalidInput):
        render_report(october, "csv", "nonsense")
    with pytest.raises(InvalidInput):
        render_report(october, "docx")


def test_xlsx_has_every_table(october: dict[str, Any]) -> None:
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(render_report(october, "xlsx").content))
    assert book.sheetnames == [
        "summary",
        "daily",
        "hourly",
        "devices",
        "areas",
        "channels",
        "appliances",
        "gaps",
    ]
    assert book["daily"].max_row == 32
    assert book["summary"]["B3"].value == october["summary"]["energy_kwh"]


def test_missing_pdf_extra_is_a_clear_error(
    october: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import now raises ImportError
    with pytest.raises(FormatUnavailable, match=r"pip install 'wattwatch\[pdf\]'"):
        render.render_pdf(october)
