"""Plain-language findings drawn from a computed report ("the printers used 38 % …")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

# A load is worth a sentence when it is at least this big a part of the total.
MIN_SHARE_FOR_FINDING = 0.02
# Average power while closed relative to while open: below the first a load is switched off
# at closing time, from the second on it runs around the clock.
SWITCHED_OFF_RATIO = 0.15
ALWAYS_ON_RATIO = 0.8
BASE_LOAD_SHARE = 0.2
MAX_PER_KIND = 3


def kwh(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f} kWh"
    return f"{value:,.1f} kWh"


def pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.0f} %"


def money(value: float | None, currency: str) -> str:
    return "–" if value is None else f"{value:,.2f} {currency}"


def when(local_iso: str) -> str:
    return datetime.fromisoformat(local_iso).strftime("%a %d %b at %H:%M")


def findings(report: dict[str, Any]) -> list[dict[str, str]]:
    """Sentences a business owner can act on, most important first."""
    out: list[dict[str, str]] = []
    summary, comp = report["summary"], report["completeness"]
    total = summary["energy_kwh"] or 0.0
    currency = report["report"]["currency"]
    breakdown = report["breakdown"]

    if comp["coverage"] is not None and comp["coverage"] < 0.9995:
        missing = [g for g in comp["gaps"] if g["hours"] >= 1]
        text = (
            f"Data is incomplete: {pct(comp['coverage'])} of the expected readings arrived. "
            "Times without data are shown as missing, not as zero"
        )
        if missing:
            longest = max(missing, key=lambda g: g["hours"])
            hours = longest["hours"]
            days = round(hours / 24)
            span = f"{days} day{'s' if days > 1 else ''}" if hours >= 24 else f"{hours:.0f} h"
            text += (
                f"; the longest gap is {longest['device']} ({longest['channel']}), "
                f"{span} from {longest['from_local'][:16].replace('T', ' ')}"
            )
        out.append({"kind": "data_gap", "text": text + "."})

    if total <= 0:
        out.append({"kind": "no_energy", "text": "No energy use was recorded in this period."})
        return out

    bh = summary["business_hours"]
    if bh["outside_share"] is not None and bh["outside_share"] >= 0.05:
        out.append(
            {
                "kind": "out_of_hours",
                "text": (
                    f"{pct(bh['outside_share'])} of the energy ({kwh(bh['outside_kwh'])}) was "
                    "used outside business hours."
                ),
            }
        )
    candidates = [
        *breakdown["appliances"],
        *breakdown["devices"],
        *(a for a in breakdown["areas"] if a["id"] is not None),
    ]
    big = [
        c
        for c in candidates
        if (c["share"] or 0) >= MIN_SHARE_FOR_FINDING
        and c["closed_open_power_ratio"] is not None
        and c["name"] != "(not labelled)"
    ]
    # Loads that should follow the opening hours but keep drawing power after closing.
    wasteful = sorted(
        (c for c in big if SWITCHED_OFF_RATIO <= c["closed_open_power_ratio"] < ALWAYS_ON_RATIO),
        key=lambda c: -(c["outside_hours_kwh"] or 0),
    )
    # An area holding one device says the same as the device: one sentence is enough.
    seen: set[float] = set()
    for load in wasteful:
        key = round(load["outside_hours_kwh"] or 0.0, 1)
        if key in seen or len(seen) >= MAX_PER_KIND:
            continue
        seen.add(key)
        out.append(
            {
                "kind": "out_of_hours_load",
                "text": (
                    f"{load['name']} used {pct(load['outside_hours_share'])} of its energy "
                    f"outside business hours ({kwh(load['outside_hours_kwh'])})."
                ),
            }
        )
    always_on = [
        d
        for d in breakdown["devices"]
        if (d["share"] or 0) >= MIN_SHARE_FOR_FINDING
        and (d["closed_open_power_ratio"] or 0) >= ALWAYS_ON_RATIO
    ]
    if always_on:
        names = [d["name"] for d in always_on[:MAX_PER_KIND]]
        more = len(always_on) - len(names)
        listed = ", ".join(names) + (f" and {more} more" if more else "")
        energy = sum(d["energy_kwh"] or 0 for d in always_on)
        out.append(
            {
                "kind": "always_on",
                "text": (
                    f"Running around the clock: {listed} "
                    f"({kwh(energy)}, {pct(energy / total)} of the total). "
                    "Check they need to."
                ),
            }
        )

    if summary["base_load_share"] is not None and summary["base_load_share"] >= BASE_LOAD_SHARE:
        out.append(
            {
                "kind": "base_load",
                "text": (
                    f"A base load of {summary['base_load_kw']:.2f} kW runs around the clock: "
                    f"{pct(summary['base_load_share'])} of all energy "
                    f"({kwh(summary['base_load_kwh'])}). Switching off standby loads saves most "
                    "of it."
                ),
            }
        )

    if summary["peak"] is not None:
        out.append(
            {
                "kind": "peak",
                "text": (
                    f"Peak demand was {summary['peak']['kw']:.1f} kW (15-minute average) on "
                    f"{when(summary['peak']['local'])}."
                ),
            }
        )

    top = report["top_consumers"]
    if len(top) > 1 and top[0]["share"] is not None:
        out.append(
            {
                "kind": "top_consumer",
                "text": (
                    f"{top[0]['name']} used the most energy: {pct(top[0]['share'])} "
                    f"({kwh(top[0]['energy_kwh'])})."
                ),
            }
        )

    for name in ("previous", "last_year"):
        other = report["comparison"].get(name)
        if other is None or other.get("change_pct") is None:
            continue
        label = other["label"] + (" (a year earlier)" if name == "last_year" else "")
        label += f", {kwh(other['energy_kwh'])}"
        change = other["change_pct"]
        direction = "more" if change > 0 else "less"
        text = (
            f"{abs(change):.0f} % {direction} energy than {label}"
            if abs(change) >= 0.5
            else f"About the same energy as {label}"
        )
        if other["days_with_data"] < other["days"]:
            text += f" (that period has data for {other['days_with_data']} of {other['days']} days)"
        out.append({"kind": f"compare_{name}", "text": text + "."})

    cost = summary["cost"]["total"]
    if cost:
        out.append(
            {
                "kind": "cost",
                "text": (
                    f"Energy cost {money(cost, currency)} in total, about "
                    f"{summary['co2_kg']:,.0f} kg CO2."
                ),
            }
        )
    return out
