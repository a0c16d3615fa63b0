"""The simulator's commands of the ``wattwatch`` CLI: ``demo`` and ``simulate`` (thin edges:
the work is in :mod:`wattwatch.sim.demo` and :mod:`wattwatch.sim.simulate`)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wattwatch.errors import WattwatchError
from wattwatch.sim.schedules import SiteKind

if TYPE_CHECKING:
    import uvicorn

    from wattwatch.app import Wattwatch
    from wattwatch.config import Settings
    from wattwatch.sim.demo import Demo

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="data directory (env WATTWATCH_DATA_DIR; default ./wattwatch-data)"
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="sqlite:///file.db or postgresql://… (env WATTWATCH_DATABASE_URL)"
    ),
]
PROTOCOLS = ("mixed", "native", "thingsboard", "tasmota", "shelly", "http")


def register(app: typer.Typer) -> None:
    """Add ``demo`` and ``simulate`` to the CLI."""
    app.command("demo")(demo)
    app.command("simulate")(simulate)


def _out(line: str) -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def demo(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    http_host: Annotated[
        str | None, typer.Option(help="HTTP listen address (default 127.0.0.1)")
    ] = None,
    http_port: Annotated[
        int | None, typer.Option(help="HTTP port (default 8080, or a free one when 8080 is taken)")
    ] = None,
    mqtt_port: Annotated[
        int | None, typer.Option(help="MQTT port (default 1883, or a free one when 1883 is taken)")
    ] = None,
    no_mqtt: Annotated[bool, typer.Option("--no-mqtt", help="devices upload over HTTP")] = False,
    history_days: Annotated[float, typer.Option(help="days of history to fill in", min=0)] = 30.0,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning")] = None,
) -> None:
    """Serve wattwatch with a demo: an office and a restaurant, history, live devices.

    Prints the dashboard URL and the demo login. Ports default to 8080/1883, or free ones
    when those are taken (the chosen ones are printed). Restarting on the same data dir
    reuses the demo organisation and fills in only what is missing.
    """
    import uvicorn

    from wattwatch.cli import port_problem, services, settings_from
    from wattwatch.sim.demo import Demo, DemoPlan
    from wattwatch.sim.runner import free_port
    from wattwatch.web.server import create_api, uvicorn_options

    settings = settings_from(
        data_dir,
        database_url,
        http_host=http_host,
        log_level=log_level or "warning",
        mqtt_enabled=False if no_mqtt else None,
    )
    host = settings.http_host
    chosen: dict[str, Any] = {}
    for what, given, default in (
        ("http_port", http_port, settings.http_port),
        ("mqtt_port", mqtt_port, settings.mqtt_port),
    ):
        if given is not None:
            problem = port_problem(host, given)
            if problem:
                _err(f"error: {what.split('_')[0].upper()} {problem}; pick another port")
                raise typer.Exit(2)
            chosen[what] = given
        else:
            chosen[what] = free_port(host, default)
    settings = settings.model_copy(update={**chosen, "mqtt_host": host})
    _setup_logging(settings.log_level)
    with services(settings, lock=True) as ww:
        plan = DemoPlan(history_days=history_days, recent_days=min(2.0, history_days))
        the_demo = Demo(ww, plan)
        provisioned = the_demo.prepare()
        mqtt_on = settings.mqtt_enabled and _enable_mqtt(ww)
        config = uvicorn.Config(
            create_api(ww),
            host=host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
            access_log=False,
            **uvicorn_options(ww),
        )
        server = uvicorn.Server(config)
        with ExitSignalsReturn():
            asyncio.run(_serve_demo(server, the_demo, settings, mqtt_on, provisioned.created))


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # amqtt logs every connection and session transition at INFO.
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def _enable_mqtt(ww: Wattwatch) -> bool:
    """Start the embedded broker with the app when this wattwatch has one."""
    enable = getattr(ww, "enable_mqtt", None)
    if enable is None:
        return False
    enable()
    return True


async def _serve_demo(
    server: uvicorn.Server, the_demo: Demo, settings: Settings, mqtt_on: bool, created: int
) -> None:
    from wattwatch.sim.runner import mqtt_reachable

    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if serving.done():
        await serving
        return
    url = f"http://{settings.http_host}:{settings.http_port}"
    mqtt = (settings.mqtt_host, settings.mqtt_port)
    mqtt_on = mqtt_on and mqtt_reachable(*mqtt)
    login = the_demo.login
    assert login is not None
    protocols = ", ".join(f"{n} {p}" for p, n in sorted(the_demo.protocols(mqtt_on).items()))
    lines = [
        "wattwatch demo: an office and a restaurant"
        + (" (created now)" if created else " (reused from the data dir)"),
        f"  dashboard: {url}/",
        f"  login:     {login.email}  password: {login.password or '(printed at the first start)'}",
        f"  API:       {url}/api/v1  (docs {url}/docs)",
        "  MQTT:      "
        + (f"mqtt://{mqtt[0]}:{mqtt[1]}" if mqtt_on else "off (devices upload over HTTP)"),
        f"  devices:   {len(the_demo.devices)} ({protocols})",
        f"  data:      {settings.store_url().split('@')[-1]}",
        "Filling in the history; live readings follow. Ctrl-C stops.",
    ]
    for line in lines:
        _out(line)
    stop = asyncio.Event()
    filler = asyncio.create_task(the_demo.run(url, stop, mqtt=mqtt if mqtt_on else None, say=_out))
    # The devices stop as soon as the server starts to shut down (Ctrl-C, SIGTERM).
    while not server.should_exit and not serving.done():
        if filler.done() and filler.exception() is not None:
            server.should_exit = True
            break
        await asyncio.sleep(0.1)
    stop.set()
    try:
        await filler
    except Exception as exc:  # shown, but the server still shuts down cleanly
        _err(f"error: the demo devices stopped: {exc!r}")
    await serving


class ExitSignalsReturn:
    """uvicorn re-raises the SIGINT/SIGTERM it handled once it has shut down; with the
    default handlers that would kill the process before the store is closed. These
    handlers let ``serve()`` return instead."""

    def __enter__(self) -> None:
        self.previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in self.previous:
            signal.signal(s, self._ignore)

    @staticmethod
    def _ignore(_sig: int, _frame: FrameType | None) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def simulate(
    site_type: Annotated[SiteKind, typer.Option(help="home, office or restaurant")] = (
        SiteKind.OFFICE
    ),
    devices: Annotated[int, typer.Option(help="devices in all", min=1)] = 10,
    sites: Annotated[int, typer.Option(help="spread the devices over N sites", min=1)] = 1,
    protocol: Annotated[
        str, typer.Option(help="mixed (each device its own), native, thingsboard, tasmota…")
    ] = "mixed",
    step: Annotated[float, typer.Option(help="seconds between readings", min=0.1)] = 5.0,
    speed: Annotated[float, typer.Option(help="simulated seconds per second", min=1.0)] = 1.0,
    duration: Annotated[
        float | None,
        typer.Option(help="seconds of live reporting (default: until Ctrl-C; 0: none)"),
    ] = None,
    backfill_days: Annotated[
        float, typer.Option(help="first upload N days of history at full speed", min=0)
    ] = 0.0,
    url: Annotated[str | None, typer.Option(help="a running wattwatch, http://host:8080")] = None,
    email: Annotated[str | None, typer.Option(help="login of an admin/owner (with --url)")] = None,
    password: Annotated[str | None, typer.Option(help="its password")] = None,
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
    mqtt_host: Annotated[
        str | None, typer.Option(help="MQTT broker host (default: the URL's host)")
    ] = None,
    mqtt_port: Annotated[
        int | None, typer.Option(help="MQTT port; without it devices upload over HTTP")
    ] = None,
    connections: Annotated[int, typer.Option(help="HTTP connections", min=1)] = 16,
    max_rate: Annotated[
        float | None, typer.Option(help="at most N readings per second (load tests)")
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same fleet)")] = 0,
    timezone: Annotated[str, typer.Option(help="the sites' timezone")] = "UTC",
    name: Annotated[
        str | None, typer.Option(help="site name prefix; device uids derive from it")
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Simulate a fleet: live (optionally sped up) against a running server, or history.

    With --url: registers the devices over the API (again next time: found by uid), uploads
    --backfill-days of history, then reports live (MQTT when --mqtt-port is given, else
    HTTP batches). With --data-dir/--database-url instead: writes --backfill-days of history
    straight into that store (no server may be running on it).
    """
    from wattwatch.sim.simulate import FleetSpec

    if protocol not in PROTOCOLS:
        _err(f"error: --protocol must be one of {', '.join(PROTOCOLS)}")
        raise typer.Exit(2)
    fleet = FleetSpec(site_type, devices, sites, seed, timezone, protocol, name)
    try:
        if url is None:
            summary = _simulate_local(fleet, data_dir, database_url, backfill_days, step, as_json)
        else:
            if password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            if not email or not password:
                _err("error: --url needs --email and --password (or --password-stdin)")
                raise typer.Exit(2)
            summary = _simulate_remote(
                fleet,
                url,
                email,
                password,
                backfill_days=backfill_days,
                step=step,
                speed=speed,
                duration=duration,
                mqtt_host=mqtt_host,
                mqtt_port=mqtt_port,
                connections=connections,
                max_rate=max_rate,
                quiet=as_json,
            )
    except (WattwatchError, ValueError) as exc:
        _err(f"error: {exc}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            _out(f"{key}: {json.dumps(value)}")


def _simulate_local(
    fleet: Any,
    data_dir: Path | None,
    database_url: str | None,
    backfill_days: float,
    step: float,
    quiet: bool,
) -> dict[str, Any]:
    from wattwatch.cli import owner_principal, services, settings_from
    from wattwatch.sim.simulate import simulate_local

    with services(settings_from(data_dir, database_url), lock=True) as ww:
        report, _ = simulate_local(
            ww,
            owner_principal(ww),
            fleet,
            backfill_days=backfill_days,
            step_s=step,
            say=None if quiet else _err,
        )
        return report.to_json()


def _simulate_remote(
    fleet: Any,
    url: str,
    email: str,
    password: str,
    *,
    backfill_days: float,
    step: float,
    speed: float,
    duration: float | None,
    mqtt_host: str | None,
    mqtt_port: int | None,
    connections: int,
    max_rate: float | None,
    quiet: bool,
) -> dict[str, Any]:
    from urllib.parse import urlsplit

    from wattwatch.sim.provision import ApiRegistrar
    from wattwatch.sim.simulate import simulate_remote

    registrar = ApiRegistrar.login(url, email, password)
    mqtt = None
    if mqtt_port is not None:
        mqtt = (mqtt_host or urlsplit(url).hostname or "127.0.0.1", mqtt_port)

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, stop.set)
        report = await simulate_remote(
            registrar,
            fleet,
            url=url,
            backfill_days=backfill_days,
            step_s=step,
            speed=speed,
            duration_s=duration,
            mqtt=mqtt,
            connections=connections,
            max_readings_per_s=max_rate,
            stop=stop,
            say=None if quiet else _err,
        )
        return report.to_json()

    try:
        return asyncio.run(main())
    finally:
        registrar.close()
