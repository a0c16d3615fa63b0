"""Device simulator: appliance models, sites and fleets, live devices, the offline-first log.

- :mod:`~wattwatch.sim.appliances`: the appliance spec table and behaviours (one day → pulses)
- :mod:`~wattwatch.sim.schedules`: site kinds, local days, presence, usage curves, weather
- :mod:`~wattwatch.sim.mains`: supply voltage per phase and frequency
- :mod:`~wattwatch.sim.timeline`: pulses → cumulative energy → mean power on any grid
- :mod:`~wattwatch.sim.layout`: inventories and device layouts (CT monitor, plugs, 3-phase panel)
- :mod:`~wattwatch.sim.site`: :class:`Site`, :class:`Fleet`, :class:`DeviceSim`, ground truth
- :mod:`~wattwatch.sim.flashlog`: the device's append-only, CRC-framed log on flash
- :mod:`~wattwatch.sim.payloads`: what firmware sends (native, ThingsBoard, Tasmota, Shelly, HTTP)
"""

from wattwatch.sim.flashlog import FlashLog, Record, read_log
from wattwatch.sim.layout import ChannelSpec, DeviceSpec
from wattwatch.sim.mains import MainsSpec
from wattwatch.sim.schedules import Climate, SiteKind
from wattwatch.sim.site import (
    DEVICE_METRICS,
    DeviceChunk,
    DeviceSim,
    Fleet,
    NoiseSpec,
    Site,
    Truth,
    to_readings,
)

__all__ = [
    "DEVICE_METRICS",
    "ChannelSpec",
    "Climate",
    "DeviceChunk",
    "DeviceSim",
    "DeviceSpec",
    "FlashLog",
    "Fleet",
    "MainsSpec",
    "NoiseSpec",
    "Record",
    "Site",
    "SiteKind",
    "Truth",
    "read_log",
    "to_readings",
]
