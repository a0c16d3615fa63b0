"""The pluggy hook specifications: every extension point of wattwatch, in one place.

A plugin is a module (or object) with functions named like these, marked ``@hookimpl``,
published under the ``wattwatch`` entry point group. An implementation may take only the
arguments it needs. Hooks run in a worker thread, never in the ingest path; one that raises
is logged and the others still run. See docs/hooks.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from wattwatch.hooks.notifiers import Notifier, NotifierContext, PluginContext

PROJECT = "wattwatch"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def wattwatch_startup(context: PluginContext) -> None:
    """wattwatch started: ``context.data_dir`` is where a plugin may keep files."""


@hookspec
def wattwatch_shutdown() -> None:
    """wattwatch is stopping: flush and close what the plugin holds."""


@hookspec
def wattwatch_reading_batch(device_id: int, org_id: int, readings: list[dict[str, Any]]) -> None:
    """Readings just committed for one device: ``[{"ts", "channel", "power_w", …}]``
    (canonical metric names and units, ``ts`` in epoch ms)."""


@hookspec
def wattwatch_alert(event: str, alert: dict[str, Any], ts_ms: int) -> None:
    """An alert changed: ``event`` is alert.raised / .updated / .acknowledged / .cleared."""


@hookspec
def wattwatch_device_status(device_id: int, org_id: int, online: bool, ts_ms: int) -> None:
    """A device came online or went offline (status message or MQTT last will)."""


@hookspec
def wattwatch_command_result(
    device_id: int, org_id: int, result: dict[str, Any], ts_ms: int
) -> None:
    """A device answered a command: ``{"id", "action", "ok", "state", "error"}``."""


@hookspec
def wattwatch_notifiers(context: NotifierContext) -> list[Notifier]:
    """Notifier kinds this plugin adds (alert rule ``notify`` targets ``{"kind": …}``).

    The built-in webhook, email and MQTT notifiers register through this same hook.
    """
    raise NotImplementedError  # pragma: no cover - a spec has no body
