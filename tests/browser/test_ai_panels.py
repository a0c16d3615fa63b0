"""The device page's appliance and forecast panels in Chromium, on a served data dir with a
trained model: what is on now, the table and timeline of the last 24 h, the forecast chart
with its interval band and the month's bill; on a phone too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.ai.houses import QUICK_NILM, House, make_house
from tests.browser.conftest import launch, log_in
from tests.conftest import ServerProcess
from tests.registry.accounts import PASSWORD

from wattwatch.app import Wattwatch
from wattwatch.config import Settings

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> House:
    data_dir = tmp_path_factory.mktemp("ai-dash") / "data"
    ww = Wattwatch.open(Settings(data_dir=data_dir), lock=True)
    try:
        house = make_house(ww, days=15, tariff={"price_per_kwh": 0.3, "currency": "EUR"})
        assert ww.ai is not None
        ww.ai.nilm_params = QUICK_NILM
        ww.ai.train(house.owner, house.monitor["id"], days=3)
    finally:
        ww.close()
    house.ww = None  # type: ignore[assignment]  # closed: the server owns the data dir now
    setattr(house, "data_dir", data_dir)  # noqa: B010
    return house


@pytest.fixture(scope="module")
def server(trained: House) -> Iterator[ServerProcess]:
    srv = ServerProcess(Path(getattr(trained, "data_dir")))  # noqa: B009
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


VIEWPORTS = [{"width": 1280, "height": 900}, {"width": 375, "height": 812}]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_appliance_and_forecast_panels_show_real_data(
    browser: Any, server: ServerProcess, trained: House, viewport: dict[str, int]
) -> None:
    ctx = browser.new_context(viewport=viewport)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, server.url, "owner@house.example", PASSWORD)
    page.goto(f"{server.url}/devices/{trained.monitor['id']}")
    now = page.locator("#appliances-now")
    try:
        now.get_by_text("On at").wait_for(timeout=60_000)
    except sync_api.TimeoutError:
        panel = page.locator("#appliances").inner_text()
        raise AssertionError(
            f"now: {now.inner_text()!r}; panel: {panel!r}; page errors: {errors}\n"
            f"server log:\n{server.read_output()[-4000:]}"
        ) from None
    table = page.locator("#appliances table")
    assert table.locator("td", has_text="Kettle").count() == 1
    bars = page.locator("#appliance-timeline .tl-bar")
    assert bars.count() >= 2  # the kettle ran about four times in the last day
    assert "Kettle" in (bars.first.get_attribute("title") or "")
    # forecast: 24 hourly points with an interval band, then the month's bill
    page.locator("#forecast-chart canvas").wait_for(timeout=30_000)
    info = page.locator("#forecast-info")
    assert "Next 24 h:" in info.inner_text() and "EUR" in info.inner_text()
    page.get_by_label("This month").check()
    try:
        page.locator("#forecast-info", has_text="This month:").wait_for(timeout=30_000)
    except sync_api.TimeoutError:
        raise AssertionError(f"month forecast: {info.inner_text()}") from None
    assert "bill" in info.inner_text()
    assert page.locator("#forecast-chart canvas").count() == 0
    page.get_by_label("Next 7 days").check()
    page.locator("#forecast-info", has_text="Next 7 days:").wait_for(timeout=30_000)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"] + 1, "no sideways scrolling"
    assert errors == []
    ctx.close()
