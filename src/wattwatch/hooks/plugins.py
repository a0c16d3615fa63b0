"""The plugin manager: hook specs, the built-in plugins, and plugins found by entry point."""

from __future__ import annotations

import logging
from typing import Any

import pluggy

from wattwatch.hooks import builtin, specs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "wattwatch"
# Registered before any third-party plugin, through the very same hooks.
DEFAULT_PLUGINS = (builtin,)


def make_plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with the specs, the built-ins and (optionally) installed plugins."""
    pm = pluggy.PluginManager(specs.PROJECT)
    pm.add_hookspecs(specs)
    for plugin in DEFAULT_PLUGINS:
        pm.register(plugin, name=f"wattwatch.{plugin.__name__.rsplit('.', 1)[-1]}")
    if entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def call_each(hook: Any, **kwargs: Any) -> list[Any]:
    """Call every implementation of ``hook``, each with the arguments it asks for.

    Unlike a plain pluggy call, a plugin that raises is logged and the others still run:
    one broken plugin must not starve the rest.
    """
    results = []
    for impl in reversed(hook.get_hookimpls()):
        try:
            result = impl.function(*(kwargs[name] for name in impl.argnames))
        except Exception:
            log.exception("plugin %s failed in %s", impl.plugin_name, hook.name)
            continue
        if result is not None:
            results.append(result)
    return results


def describe_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Each loaded plugin: its name, where it came from, and the hooks it implements."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append(
            {
                "name": name,
                "package": f"{dist.project_name} {dist.version}"
                if dist
                else "wattwatch (built in)",
                "hooks": hooks,
            }
        )
    return out
