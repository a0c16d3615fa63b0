"""Alert and hook persistence on PostgreSQL: rules, alerts, history, webhooks, dead letters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.alerts.conftest import Env
from tests.conftest import free_port

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import Role
from wattwatch.registry.service import Principal

T0 = 1_780_000_000_000


@pytest.mark.postgres
def test_alert_lifecycle_and_dead_letters_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=pg_url,
        delivery_attempts=2,
        delivery_first_delay_s=0.05,
    )
    ww = Wattwatch.open(settings, lock=True)
    try:
        org = ww.registry.db.create_org("pg")
        owner = Principal(0, org, Role.OWNER, "owner@example.com")
        site = ww.registry.create_site(owner, "Shop", "Europe/Madrid", {})
        device, _ = ww.registry.create_device(owner, name="plug", site_id=site["id"])
        env = Env(ww, owner, site["id"], device)
        nobody = f"http://127.0.0.1:{free_port()}/nobody"
        assert ww.webhooks is not None

        async def main() -> None:
            async with env.running():
                hook, _ = await asyncio.to_thread(
                    ww.webhooks.create, owner, nobody, ["alert.raised"]
                )
                await env.rule(kind="threshold", value=2000, notify=[hook["id"]])
                await env.send([(T0, 2500.0), (T0 + 10_000, 2600.0)])
                (alert,) = await env.list("active")
                acked = env.alerts.acknowledge(owner, alert["id"])
                assert acked["state"] == "acknowledged"
                await env.send([(T0 + 20_000, 100.0)])
                (alert,) = await env.list("cleared")
                assert alert["acknowledged_by"] == "owner@example.com"
                history = env.alerts.get_alert(owner, alert["id"])["history"]
                assert [h["action"] for h in history] == ["raised", "acknowledged", "cleared"]
                assert ww.hooks is not None
                await ww.hooks.drain()
                await ww.hooks.deliverer.idle()
                # Raised (the subscription, and the rule's notify: delivered once) and cleared
                # (the rule's notify only): both dead, the receiver does not exist.
                letters = ww.webhooks.dead_letters(owner)
                assert sorted(x["event"] for x in letters) == ["alert.cleared", "alert.raised"]
                assert {x["state"] for x in letters} == {"dead"}

        asyncio.run(main())
    finally:
        ww.close()
