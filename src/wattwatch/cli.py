"""The ``wattwatch`` command line: each command builds the services and calls one method."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from wattwatch import __version__
from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import DeviceKind, DeviceProtocol, Role
from wattwatch.errors import WattwatchError
from wattwatch.registry.service import Principal

app = typer.Typer(help="wattwatch: real-time electricity monitoring.", no_args_is_help=True)
user_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
site_app = typer.Typer(help="Manage sites.", no_args_is_help=True)
device_app = typer.Typer(help="Manage devices.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(site_app, name="site")
app.add_typer(device_app, name="device")

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="data directory [env WATTWATCH_DATA_DIR; ./wattwatch-data]"),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="sqlite:///file.db [env WATTWATCH_DATABASE_URL]"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]


def settings_from(data_dir: Path | None, database_url: str | None, **more: Any) -> Settings:
    overrides: dict[str, Any] = {k: v for k, v in more.items() if v is not None}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url is not None:
        overrides["database_url"] = database_url
    return Settings(**overrides)


@contextmanager
def services(settings: Settings, *, lock: bool = False) -> Iterator[Wattwatch]:
    try:
        ww = Wattwatch.open(settings, lock=lock)
    except WattwatchError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        yield ww
    except WattwatchError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        ww.close()


def owner_principal(ww: Wattwatch) -> Principal:
    """The CLI acts as the owner of the first organisation (it has the data dir anyway)."""
    org_id = ww.registry.db.first_org_id()
    if org_id is None:
        org_id = ww.registry.db.create_org("My organisation")
    return Principal(user_id=0, org_id=org_id, role=Role.OWNER, email="cli")


def emit(record: Any, as_json: bool, title: str | None = None) -> None:
    if as_json:
        print(json.dumps(record, indent=2, default=str))
        return
    rows = record if isinstance(record, list) else [record]
    if not rows:
        console.print("(none)")
        return
    table = Table(title=title)
    keys = list(rows[0])
    for key in keys:
        table.add_column(key)
    for row in rows:
        table.add_row(*(str(row.get(k, "")) for k in keys))
    console.print(table)


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or None."""
    if port == 0:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use by another program"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


@app.command()
def serve(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    http_host: Annotated[str | None, typer.Option(help="HTTP listen address")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port [8080]")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning")] = None,
) -> None:
    """Run wattwatch: HTTP API and ingest, in one process."""
    import uvicorn

    from wattwatch.web.server import create_api

    settings = settings_from(
        data_dir, database_url, http_host=http_host, http_port=http_port, log_level=log_level
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    problem = port_problem(settings.http_host, settings.http_port)
    if problem:
        err.print(
            f"[red]error:[/red] HTTP {problem}. Pick another with --http-port N "
            "(or WATTWATCH_HTTP_PORT=N)."
        )
        raise typer.Exit(2)
    with services(settings, lock=True) as ww:
        boot = ww.registry.bootstrap_owner()
        if boot is not None:
            console.print(
                "[bold]First start: created the owner account.[/bold]\n"
                f"  email:    {boot.email}\n  password: {boot.password}\n"
                "  This password is shown only now; change it after logging in."
            )
        config = uvicorn.Config(
            create_api(ww),
            host=settings.http_host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
        server = uvicorn.Server(config)
        console.print(
            f"wattwatch {__version__}: HTTP on http://{settings.http_host}:{settings.http_port} "
            f"(data: {settings.store_url().split('@')[-1]})"
        )
        sys.stdout.flush()
        asyncio.run(server.serve())


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Option(help="login email")],
    role: Annotated[Role, typer.Option(help="owner, admin or viewer")] = Role.VIEWER,
    password: Annotated[str | None, typer.Option(help="at least 10 characters")] = None,
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Create a user in the first organisation."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        err.print("[red]error:[/red] give --password or --password-stdin")
        raise typer.Exit(2)
    with services(settings_from(data_dir, database_url)) as ww:
        user_id = ww.registry.add_user(email, password, role)
        emit({"id": user_id, "email": email.lower(), "role": str(role)}, as_json)


@user_app.command("list")
def user_list(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: AsJson = False
) -> None:
    """List the users of the first organisation."""
    with services(settings_from(data_dir, database_url)) as ww:
        emit(ww.registry.db.list_users(owner_principal(ww).org_id), as_json, "users")


@site_app.command("add")
def site_add(
    name: Annotated[str, typer.Option(help="site name")],
    timezone: Annotated[str, typer.Option(help="IANA timezone, e.g. Europe/Madrid")] = "UTC",
    price_per_kwh: Annotated[float, typer.Option(help="flat tariff per kWh")] = 0.0,
    currency: Annotated[str, typer.Option(help="currency code")] = "EUR",
    address: Annotated[str | None, typer.Option(help="postal address")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Create a site."""
    with services(settings_from(data_dir, database_url)) as ww:
        site = ww.registry.create_site(
            owner_principal(ww),
            name,
            timezone,
            {"currency": currency, "price_per_kwh": price_per_kwh},
            address,
        )
        emit(site, as_json)


@site_app.command("list")
def site_list(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: AsJson = False
) -> None:
    """List sites."""
    with services(settings_from(data_dir, database_url)) as ww:
        emit(ww.registry.db.list_sites(owner_principal(ww).org_id), as_json, "sites")


@device_app.command("add")
def device_add(
    name: Annotated[str, typer.Option(help="device name")],
    site: Annotated[int | None, typer.Option(help="site id")] = None,
    kind: Annotated[DeviceKind, typer.Option(help="monitor, plug or panel")] = DeviceKind.MONITOR,
    protocol: Annotated[DeviceProtocol, typer.Option(help="how it talks")] = (
        DeviceProtocol.NATIVE
    ),
    uid: Annotated[str | None, typer.Option(help="device uid (default: generated)")] = None,
    topic: Annotated[str | None, typer.Option(help="Tasmota topic / Shelly prefix")] = None,
    channel: Annotated[list[str] | None, typer.Option(help="channel name (repeatable)")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Register a device and print its token (shown only this once)."""
    with services(settings_from(data_dir, database_url)) as ww:
        device, token = ww.registry.create_device(
            owner_principal(ww),
            name=name,
            site_id=site,
            kind=kind,
            protocol=protocol,
            uid=uid,
            topic=topic,
            channels=channel or None,
        )
        record = {"id": device["id"], "uid": device["uid"], "name": name, "token": token}
        emit(record, as_json)
        if not as_json:
            err.print("The token is shown only now: store it in the device.")


@device_app.command("list")
def device_list(
    site: Annotated[int | None, typer.Option(help="only this site")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """List devices."""
    keys = ("id", "uid", "name", "kind", "protocol", "site_id", "online", "last_seen_ms")
    with services(settings_from(data_dir, database_url)) as ww:
        devices = ww.registry.db.list_devices(owner_principal(ww).org_id, site)
        emit([{k: d[k] for k in keys} for d in devices], as_json, "devices")


def main() -> None:  # pragma: no cover - console entry
    app()
