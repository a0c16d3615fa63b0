"""The channel-id cache an MQTT worker fills at start: one query for every device's channels,
the same ids resolve_channel would read one by one, and nothing of devices past the limit."""

from __future__ import annotations

from tests.registry.accounts import account

from wattwatch.app import Wattwatch


def test_cache_channels_holds_what_resolve_channel_reads(ww: Wattwatch) -> None:
    owner, _ = account(ww, "owner@cache.example")
    site = ww.registry.create_site(owner, "Plant", "UTC", {})
    made = [
        ww.registry.create_device(
            owner, name=f"panel {i}", site_id=site["id"], channels=["a", "b", f"c{i}"]
        )[0]
        for i in range(4)
    ]
    db = ww.registry.db
    db.forget_caches()
    assert db.cache_channels(made[2]["id"]) == 9  # three devices, three channels each
    cached = dict(db._channel_ids)
    expected = {
        (d["id"], name): ch for d in made[:3] for name, ch in db.channel_ids_of(d["id"]).items()
    }
    assert cached == expected
    assert all(db.resolve_channel(d, name) == ch for (d, name), ch in expected.items())
    assert not any(d == made[3]["id"] for d, _ in cached)  # past the limit: read on first use
