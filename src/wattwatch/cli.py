"""The ``wattwatch`` command line: each command builds the services and calls one method."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Protocol, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from wattwatch import __version__
from wattwatch.app import Wattwatch
from wattwatch.cli_sim import ExitSignalsReturn
from wattwatch.cli_sim import register as register_sim_commands
from wattwatch.config import Settings
from wattwatch.domain import DeviceKind, DeviceProtocol, Interval, Role
from wattwatch.errors import WattwatchError
from wattwatch.registry.service import Principal

if TYPE_CHECKING:
    from pydantic import ValidationError

    from wattwatch.store.sqlstore import SqlStore

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
    typer.Option(
        "--database-url",
        help="sqlite:///file.db or postgresql://user@host/db [env WATTWATCH_DATABASE_URL]",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
BrokerUrl = Annotated[
    str | None,
    typer.Option(
        "--broker-url",
        help="external MQTT broker mqtt://user:pass@host:1883 [env WATTWATCH_BROKER_URL]",
    ),
]


def settings_from(data_dir: Path | None, database_url: str | None, **more: Any) -> Settings:
    overrides: dict[str, Any] = {k: v for k, v in more.items() if v is not None}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url is not None:
        overrides["database_url"] = database_url
    return Settings(**overrides)


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: wrong use, 1: refused)."""
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code) from None


def fail_validation(exc: ValidationError) -> NoReturn:
    """Print the first ten problems pydantic found, each with where it is; exit 2."""
    for problem in exc.errors()[:10]:
        where = ".".join(str(x) for x in problem["loc"])
        err.print(f"[red]error:[/red] {where}: {problem['msg']}")
    raise typer.Exit(2) from None


class _Closeable(Protocol):
    def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closeable)


@contextmanager
def _opened(open_: Callable[[], _C]) -> Iterator[_C]:
    """What ``open_`` opens, closed after the block: failing to open it exits 2, a
    ``WattwatchError`` in the block exits 1 (each printed as ``error: …``)."""
    try:
        opened = open_()
    except WattwatchError as exc:
        fail(str(exc), 2)
    try:
        yield opened
    except WattwatchError as exc:
        fail(str(exc), 1)
    finally:
        opened.close()


def services(settings: Settings, *, lock: bool = False) -> AbstractContextManager[Wattwatch]:
    return _opened(lambda: Wattwatch.open(settings, lock=lock))


def open_services(
    data_dir: Path | None, database_url: str | None
) -> AbstractContextManager[Wattwatch]:
    """The services on the store the --data-dir / --database-url options name (no lock)."""
    return services(settings_from(data_dir, database_url))


def owner_principal(ww: Wattwatch) -> Principal:
    """The CLI acts as the owner of the first organisation (it has the data dir anyway)."""
    org_id = ww.registry.db.first_org_id()
    if org_id is None:
        org_id = ww.registry.db.create_org("My organisation")
    return Principal(user_id=0, org_id=org_id, role=Role.OWNER, email="cli")


def emit(
    record: Any, as_json: bool, title: str | None = None, columns: tuple[str, ...] = ()
) -> None:
    """``record`` (a dict or a list of them) as JSON, or as a table of its ``columns`` (all
    when none are named)."""
    if as_json:
        print(json.dumps(record, indent=2, default=str))
        return
    rows = record if isinstance(record, list) else [record]
    if columns:
        rows = [{k: row[k] for k in columns} for row in rows]
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
    mqtt_host: Annotated[str | None, typer.Option(help="MQTT listen address")] = None,
    mqtt_port: Annotated[
        int | None, typer.Option(help="MQTT port of the embedded broker [1883]")
    ] = None,
    broker_url: BrokerUrl = None,
    no_mqtt: Annotated[bool, typer.Option("--no-mqtt", help="no MQTT at all")] = False,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning")] = None,
) -> None:
    """Run wattwatch: HTTP API and ingest, in one process.

    MQTT: an embedded broker on --mqtt-port, or with --broker-url the process consumes an
    external broker's shared subscription like a worker.
    """
    import uvicorn

    from wattwatch.web.server import create_api, uvicorn_options

    settings = settings_from(
        data_dir,
        database_url,
        http_host=http_host,
        http_port=http_port,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        broker_url=broker_url,
        mqtt_enabled=False if no_mqtt else None,
        log_level=log_level,
    )
    setup_logging(settings.log_level)
    problem = port_problem(settings.http_host, settings.http_port)
    if problem:
        fail(f"HTTP {problem}. Pick another with --http-port N (or WATTWATCH_HTTP_PORT=N).", 2)
    with services(settings, lock=True) as ww:
        # After the data-dir lock: "another wattwatch owns this dir" is the better answer.
        if settings.mqtt_enabled and not settings.broker_url:
            problem = port_problem(settings.mqtt_host, settings.mqtt_port)
            if problem:
                fail(
                    f"MQTT {problem} (a Mosquitto?). Pick another port with "
                    "--mqtt-port N (or WATTWATCH_MQTT_PORT=N), use that broker with "
                    f"--broker-url mqtt://{settings.mqtt_host}:{settings.mqtt_port}, or run "
                    "without MQTT (--no-mqtt).",
                    2,
                )
        mqtt = ww.enable_mqtt(consume=settings.mqtt_consume) if settings.mqtt_enabled else None
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
            **uvicorn_options(ww),
        )
        server = uvicorn.Server(config)
        console.print(
            f"wattwatch {__version__}: HTTP on http://{settings.http_host}:{settings.http_port} "
            f"(data: {settings.store_url().split('@')[-1]})"
        )
        if mqtt is not None:
            console.print(f"  {mqtt_banner(settings)}")
        sys.stdout.flush()
        with ExitSignalsReturn():  # after a graceful shutdown the store closes, exit 0
            run_loop(server.serve())


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the server on uvloop when it is there (uvicorn[standard] installs it): the broker's
    socket handling costs about half as much CPU as on the default event loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop has no Windows build
        asyncio.run(main)
    else:
        uvloop.run(main)


def mqtt_banner(settings: Settings) -> str:
    if settings.broker_url:
        from wattwatch.broker.external import parse_broker_url

        host, port, *_ = parse_broker_url(settings.broker_url)
        if not settings.mqtt_consume:
            return f"MQTT: commands via mqtt://{host}:{port} (not consuming)"
        return f"MQTT: consuming mqtt://{host}:{port} ($share/{settings.mqtt_share_group}/…)"
    return f"MQTT on mqtt://{settings.mqtt_host}:{settings.mqtt_port} (embedded broker)"


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # amqtt logs every connection, and its session state machine every transition, at INFO.
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


@app.command()
def worker(
    broker_url: BrokerUrl = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    worker_id: Annotated[
        str | None,
        typer.Option(
            help="MQTT client id, stable across restarts (unique per worker) "
            "[wattwatch-worker-<hostname>]"
        ),
    ] = None,
    share_group: Annotated[
        str | None, typer.Option(help="shared-subscription group [wattwatch]")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning")] = None,
) -> None:
    """Consume device messages from an external MQTT broker (shared subscription) into the store.

    Run N workers with distinct --worker-id to split the load; each acknowledges a message
    only after its readings are committed. A SQLite store admits one worker (it owns the data
    dir); several workers need PostgreSQL (--database-url postgresql://…).
    """
    from wattwatch.broker.external import default_client_id

    settings = settings_from(
        data_dir,
        database_url,
        broker_url=broker_url,
        mqtt_share_group=share_group,
        log_level=log_level,
    )
    setup_logging(settings.log_level)
    if not settings.broker_url:
        fail("give --broker-url mqtt://user:pass@host:1883", 2)
    client_id = worker_id or settings.mqtt_client_id or default_client_id("worker")
    with services(settings, lock=True) as ww:
        ww.enable_mqtt(client_id=client_id)

        def started() -> None:
            # Printed once the subscriptions are in place: from here nothing is missed.
            console.print(
                f"wattwatch {__version__} worker {client_id}: {mqtt_banner(settings)} "
                f"→ {settings.store_url().split('@')[-1]}"
            )
            sys.stdout.flush()

        run_loop(run_until_signal(ww, started))  # services() reports a WattwatchError


broker_app = typer.Typer(help="MQTT broker configuration.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")


@broker_app.command("export-acl")
def broker_export_acl(
    output_dir: Annotated[
        Path, typer.Option(help="where acl, passwd (and tokens.csv) are written")
    ] = Path("mosquitto"),
    rotate_tokens: Annotated[
        bool,
        typer.Option(
            help="issue new tokens for the exported devices and put them in the password "
            "file; the tokens are written to tokens.csv once, for the devices"
        ),
    ] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Write a Mosquitto acl_file and password_file for the devices (docs/scale-out.md).

    Device tokens are stored hashed, so only new tokens (--rotate-tokens) can go into the
    password file; the service account (WATTWATCH_MQTT_SERVICE_PASSWORD) always does.
    """
    import csv
    from datetime import UTC, datetime

    from wattwatch.broker.acl_export import RULES, build_export

    settings = settings_from(data_dir, database_url)
    with services(settings) as ww:
        devices = ww.store.registry.all_devices()
        tokens: dict[str, str] = {}
        if rotate_tokens:
            for device in devices:
                if device["protocol"] in RULES and device["org_id"] is not None:
                    acting = Principal(0, device["org_id"], Role.OWNER, "cli")
                    tokens[device["uid"]] = ww.registry.rotate_device_token(acting, device["id"])
        password = settings.mqtt_service_password
        export = build_export(
            devices,
            service_user=settings.mqtt_service_user,
            service_password=password.get_secret_value() if password else None,
            device_tokens=tokens,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "acl").write_text(export.acl)
    passwd = output_dir / "passwd"
    passwd.write_text(export.passwd)
    passwd.chmod(0o600)
    if tokens:
        with (output_dir / "tokens.csv").open("w", newline="") as out:
            (output_dir / "tokens.csv").chmod(0o600)
            writer = csv.writer(out)
            writer.writerow(["uid", "token"])
            writer.writerows(tokens.items())
    record = {
        "acl": str(output_dir / "acl"),
        "passwd": str(passwd),
        "tokens": str(output_dir / "tokens.csv") if tokens else None,
        "devices": len(export.exported),
        "skipped": [{"uid": uid, "why": why} for uid, why in export.skipped],
        "service_account": settings.mqtt_service_user if password else None,
    }
    if as_json:
        emit(record, True)
        return
    console.print(f"wrote {record['acl']} ({len(export.exported)} devices) and {passwd}")
    if tokens:
        console.print(f"new device tokens in {record['tokens']}: put them into the devices")
    if not password:
        err.print(
            "[yellow]note:[/yellow] no WATTWATCH_MQTT_SERVICE_PASSWORD: add the worker account "
            f"with mosquitto_passwd {passwd} {settings.mqtt_service_user}"
        )
    for uid, why in export.skipped:
        err.print(f"  skipped {uid}: {why}")


async def run_until_signal(ww: Wattwatch, started: Callable[[], None] | None = None) -> None:
    """Start the services, run until SIGTERM/SIGINT, stop them (in-flight messages commit)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await ww.start()
    if started is not None:
        started()
    try:
        await stop.wait()
    finally:
        await ww.stop()


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
        fail("give --password or --password-stdin", 2)
    with open_services(data_dir, database_url) as ww:
        user_id = ww.registry.add_user(email, password, role)
        emit({"id": user_id, "email": email.lower(), "role": str(role)}, as_json)


@user_app.command("list")
def user_list(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: AsJson = False
) -> None:
    """List the users of the first organisation."""
    with open_services(data_dir, database_url) as ww:
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
    with open_services(data_dir, database_url) as ww:
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
    with open_services(data_dir, database_url) as ww:
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
    with open_services(data_dir, database_url) as ww:
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
    with open_services(data_dir, database_url) as ww:
        devices = ww.registry.db.list_devices(owner_principal(ww).org_id, site)
        emit([{k: d[k] for k in keys} for d in devices], as_json, "devices")


# -- durability and data access (docs/reliability.md, docs/scale-out.md) ---------------------
backup_app = typer.Typer(help="Back up, verify and restore the store.", no_args_is_help=True)
retention_app = typer.Typer(help="Drop old raw readings (rollups stay).", no_args_is_help=True)
export_app = typer.Typer(help="Data for analysis: files, wide views, roles.", no_args_is_help=True)
app.add_typer(backup_app, name="backup")
app.add_typer(retention_app, name="retention")
app.add_typer(export_app, name="export")

BackupDir = Annotated[
    Path, typer.Option("--dir", help="directory that holds the backups [./wattwatch-backups]")
]


def store_of(settings: Settings) -> AbstractContextManager[SqlStore]:
    """Just the store (no services): for backups, migrations and retention."""
    from wattwatch.app import open_store

    return _opened(lambda: open_store(settings, lock=False))


@backup_app.command("create")
def backup_create(
    backup_dir: BackupDir = Path("wattwatch-backups"),
    keep: Annotated[int | None, typer.Option(help="then keep only the newest N")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Back up the store while it runs (SQLite backup API / pg_dump)."""
    from wattwatch.backup.service import create_backup, read_manifest

    with store_of(settings_from(data_dir, database_url)) as store:
        path = create_backup(store, backup_dir, keep=keep)
    emit({"path": str(path), **read_manifest(path)["counts"]}, as_json)


@backup_app.command("verify")
def backup_verify(
    path: Annotated[Path, typer.Argument(help="a backup directory")], as_json: AsJson = False
) -> None:
    """Check a backup's files (SHA-256), integrity and row counts; exit 1 if damaged."""
    from wattwatch.backup.service import verify_backup

    try:
        found = verify_backup(path)
    except WattwatchError as exc:
        fail(str(exc), 1)
    emit({"path": str(path), "ok": found.ok, "problems": found.problems}, as_json)
    if not found.ok:
        raise typer.Exit(1)


@backup_app.command("restore")
def backup_restore(
    path: Annotated[Path, typer.Argument(help="a backup directory")],
    force: Annotated[bool, typer.Option(help="replace an existing store")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Restore a backup into the data dir or --database-url (stop wattwatch first)."""
    from wattwatch.backup.service import restore_backup
    from wattwatch.store.sqlite import DataDirLock

    settings = settings_from(data_dir, database_url)
    url = settings.store_url()
    lock = None
    try:
        if url.startswith("sqlite:///"):
            # Never pull the file from under a running server.
            lock = DataDirLock(Path(url.removeprefix("sqlite:///")).parent)
        counts = restore_backup(path, url, force=force)
    except WattwatchError as exc:
        fail(str(exc), 1)
    finally:
        if lock is not None:
            lock.release()
    emit({"restored": str(path), **counts}, as_json)


@backup_app.command("list")
def backup_list(backup_dir: BackupDir = Path("wattwatch-backups"), as_json: AsJson = False) -> None:
    """List the complete backups in a directory, oldest first."""
    from wattwatch.backup.service import list_backups, read_manifest

    rows = []
    for path in list_backups(backup_dir):
        manifest = read_manifest(path)
        rows.append(
            {
                "path": str(path),
                "backend": manifest["backend"],
                "created": manifest["created"],
                "readings": manifest["counts"]["readings"],
            }
        )
    emit(rows, as_json, "backups")


@app.command()
def migrate(
    source: Annotated[
        str, typer.Option("--from", help="sqlite:///…/wattwatch.db or postgresql://…")
    ],
    target: Annotated[
        str, typer.Option("--to", help="an empty store: postgresql://… or sqlite:///…")
    ],
    as_json: AsJson = False,
) -> None:
    """Move a whole installation (registry, readings, rollups) to another store."""
    from rich.progress import Progress

    from wattwatch.backup.migrate import migrate as run_migration

    with (
        store_of(Settings(database_url=source)) as src,
        store_of(Settings(database_url=target)) as dst,
        Progress(console=err, transient=True) as bar,
    ):
        tasks: dict[str, Any] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=total or 1)
            bar.update(tasks[table], completed=done)

        copied = run_migration(src, dst, progress)
    emit(copied, as_json)


@retention_app.command("apply")
def retention_apply(
    days: Annotated[
        int | None, typer.Option(help="keep this many days [WATTWATCH_RETENTION_RAW_DAYS]")
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Drop raw readings older than the retention age; rollups are kept."""
    from wattwatch.backup.maintenance import apply_retention

    settings = settings_from(data_dir, database_url)
    keep_days = days if days is not None else settings.retention_raw_days
    if keep_days is None or keep_days < 1:
        fail("give --days N (N ≥ 1) or set WATTWATCH_RETENTION_RAW_DAYS", 2)
    with store_of(settings) as store:
        dropped = apply_retention(store, keep_days)
    emit({"dropped_readings": dropped, "kept_days": keep_days}, as_json)


@export_app.command("readings")
def export_readings_cmd(
    device: Annotated[int, typer.Option(help="device id")],
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write")],
    start: Annotated[str, typer.Option("--from", help="ISO 8601 or epoch ms")],
    end: Annotated[str | None, typer.Option("--to", help="ISO 8601 or epoch ms [now]")] = None,
    interval: Annotated[Interval, typer.Option(help="raw, 1m, 1h, 1d, 1w, 1mo")] = Interval.RAW,
    channel: Annotated[str | None, typer.Option(help="only this channel")] = None,
    metrics: Annotated[str | None, typer.Option(help="comma-separated (raw)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv or parquet [from -o]")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Export a device's readings to CSV or Parquet, with a progress bar."""
    from rich.progress import Progress

    from wattwatch.domain import now_ms, parse_ts
    from wattwatch.export import export_readings

    kind = fmt or output.suffix.lstrip(".").lower()
    try:
        from_ms = parse_ts(start)
        to_ms = parse_ts(end) if end else now_ms() + 1
    except ValueError as exc:
        fail(str(exc), 2)
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    with (
        open_services(data_dir, database_url) as ww,
        Progress(console=err, transient=True) as bar,
    ):
        task = bar.add_task(f"export {output.name}", total=None)

        def progress(done: int, expected: int | None) -> None:
            bar.update(task, completed=done, total=max(expected or 0, done) or None)

        with output.open("wb") as out:
            n = export_readings(
                ww.queries,
                owner_principal(ww).org_id,
                device,
                out,
                fmt=kind,
                from_ms=from_ms,
                to_ms=to_ms,
                interval=interval,
                channel=channel,
                metrics=wanted,
                progress=progress,
            )
    err.print(f"{n:,} rows written to {output}")


@export_app.command("view")
def export_view(
    device: Annotated[int | None, typer.Option(help="a wide view of this device")] = None,
    site: Annotated[int | None, typer.Option(help="a wide view of this site")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """(Re)create the wide SQL view wide_device_<id> / wide_site_<id> for pandas."""
    from wattwatch.export import create_device_view, create_site_view

    if (device is None) == (site is None):
        fail("give --device ID or --site ID", 2)
    with open_services(data_dir, database_url) as ww:
        if device is not None:
            ww.registry.db.get_device(owner_principal(ww).org_id, device)
            name = create_device_view(ww.store, device)
        else:
            name = create_site_view(ww.store, owner_principal(ww).org_id, site or 0)
    console.print(name)
    err.print(f'pandas: pd.read_sql_table("{name}", sqlalchemy.create_engine(URL))')


@export_app.command("analyst-role")
def export_analyst_role(
    name: Annotated[str, typer.Option(help="login name, e.g. analyst")],
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a read-only PostgreSQL login for data scientists (no secrets visible)."""
    from wattwatch.export import create_analyst_role

    password = (
        sys.stdin.readline().rstrip("\n")
        if password_stdin
        else typer.prompt("password", hide_input=True, confirmation_prompt=True)
    )
    with store_of(settings_from(None, database_url)) as store:
        create_analyst_role(store, name, password)
    console.print(f"role {name} can now read readings, rollups and the wide views")


@app.command()
def report(
    site: Annotated[int | None, typer.Option(help="site id")] = None,
    device: Annotated[int | None, typer.Option(help="device id")] = None,
    area: Annotated[int | None, typer.Option(help="area id")] = None,
    period: Annotated[str, typer.Option(help="week, month, quarter or custom")] = "month",
    start: Annotated[
        str | None, typer.Option(help="a day in the period, YYYY-MM-DD [last complete one]")
    ] = None,
    end: Annotated[str | None, typer.Option(help="custom: last day, YYYY-MM-DD")] = None,
    format: Annotated[str, typer.Option(help="json, html, pdf, csv or xlsx")] = "json",
    table: Annotated[str | None, typer.Option(help="csv: daily, hourly, devices …")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write here")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Energy report of a site, area or device: totals, cost, peak, profile, findings."""
    from wattwatch.reports.periods import parse_day

    fmt = "json" if as_json else format
    with open_services(data_dir, database_url) as ww:
        assert ww.reports is not None
        built = ww.reports.build(
            owner_principal(ww).org_id,
            site_id=site,
            area_id=area,
            device_id=device,
            period=period,
            start=parse_day(start),
            end=parse_day(end, "end"),
        )
        rendered = ww.reports.render(built, fmt, table)
    if output is None and fmt in ("pdf", "xlsx"):
        output = Path(rendered.filename)
    if output is None:
        sys.stdout.write(rendered.content.decode())
        if not rendered.content.endswith(b"\n"):
            sys.stdout.write("\n")
        return
    output.write_bytes(rendered.content)
    err.print(f"wrote {output} ({len(rendered.content):,} bytes)")


# -- alerts and plugins (docs/hooks.md) ----------------------------------------------------
alert_app = typer.Typer(help="Alert rules and alerts.", no_args_is_help=True)
alert_rules_app = typer.Typer(help="Manage alert rules.", no_args_is_help=True)
app.add_typer(alert_app, name="alert")
alert_app.add_typer(alert_rules_app, name="rules")


def _rule_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@alert_rules_app.command("add")
def alert_rule_add(
    name: Annotated[str, typer.Option(help="rule name")],
    kind: Annotated[str, typer.Option(help="threshold, range, offline, energy_budget, …")],
    device: Annotated[int | None, typer.Option(help="device id")] = None,
    site: Annotated[int | None, typer.Option(help="site id")] = None,
    area: Annotated[int | None, typer.Option(help="area id")] = None,
    channel: Annotated[str | None, typer.Option(help="only this channel")] = None,
    severity: Annotated[str, typer.Option(help="critical, major, minor, warning, info")] = (
        "warning"
    ),
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="kind field as KEY=VALUE (JSON value), e.g. value=2000"),
    ] = None,
    notify: Annotated[
        str | None, typer.Option(help='JSON list, e.g. \'[3, {"email": "ops@example.com"}]\'')
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Create an alert rule (a running server picks it up within seconds)."""
    from pydantic import ValidationError

    from wattwatch.alerts.rules import RULE_ADAPTER

    body: dict[str, Any] = {"name": name, "kind": kind, "severity": severity}
    for key, scope_id in (("device_id", device), ("site_id", site), ("area_id", area)):
        if scope_id is not None:
            body[key] = scope_id
    if channel is not None:
        body["channel"] = channel
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--set {item!r}: use KEY=VALUE", 2)
        body[key.strip()] = _rule_value(value)
    if notify:
        body["notify"] = _rule_value(notify)
    try:
        rule = RULE_ADAPTER.validate_python(body)
    except ValidationError as exc:
        fail_validation(exc)
    with open_services(data_dir, database_url) as ww:
        assert ww.alerts is not None
        emit(ww.alerts.create_rule(owner_principal(ww), rule), as_json)


@alert_rules_app.command("list")
def alert_rule_list(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: AsJson = False
) -> None:
    """List alert rules."""
    keys = ("id", "name", "kind", "severity", "enabled", "device_id", "site_id", "area_id")
    with open_services(data_dir, database_url) as ww:
        assert ww.alerts is not None
        rules = ww.alerts.list_rules(owner_principal(ww))
        emit(rules, as_json, "rules", keys)


@alert_app.command("list")
def alert_list(
    state: Annotated[str | None, typer.Option(help="active, acknowledged or cleared")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """List alerts, newest first."""
    keys = ("id", "state", "severity", "message", "count", "raised_ms", "acknowledged_by")
    with open_services(data_dir, database_url) as ww:
        assert ww.alerts is not None
        found = ww.alerts.list_alerts(owner_principal(ww), [state] if state else None)
        emit(found, as_json, "alerts", keys)


@alert_app.command("ack")
def alert_ack(
    alert_id: Annotated[int, typer.Argument(help="alert id")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Acknowledge an alert (recorded as acknowledged by 'cli')."""
    with open_services(data_dir, database_url) as ww:
        assert ww.alerts is not None
        alert = ww.alerts.acknowledge(owner_principal(ww), alert_id)
        alert.pop("history", None)
        emit(alert, as_json)


@app.command()
def plugins(as_json: AsJson = False) -> None:
    """List the loaded plugins (built in and from the 'wattwatch' entry points) and their hooks."""
    from wattwatch.hooks.plugins import describe_plugins, make_plugin_manager

    found = describe_plugins(make_plugin_manager())
    if not as_json:
        found = [{**p, "hooks": ", ".join(p["hooks"])} for p in found]
    emit(found, as_json, "plugins")


# -- areas, inventory, claims, commands, schedules (issue 4; docs/api.md) --------------------
area_app = typer.Typer(help="Manage the areas (rooms, floors) of a site.", no_args_is_help=True)
schedule_app = typer.Typer(help="Switch plugs at set times (site timezone).", no_args_is_help=True)
app.add_typer(area_app, name="area")
app.add_typer(schedule_app, name="schedule")


@area_app.command("add")
def area_add(
    site: Annotated[int, typer.Option(help="site id")],
    name: Annotated[str, typer.Option(help="area name, e.g. 'Floor 2'")],
    kind: Annotated[str | None, typer.Option(help="room, floor, line …")] = None,
    parent: Annotated[int | None, typer.Option(help="the area it is inside")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Create an area on a site (inside another with --parent)."""
    with open_services(data_dir, database_url) as ww:
        emit(ww.registry.create_area(owner_principal(ww), site, name, kind, parent), as_json)


@area_app.command("list")
def area_list(
    site: Annotated[int, typer.Option(help="site id")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """List a site's areas with their paths."""
    keys = ("id", "path", "kind", "parent_id")
    with open_services(data_dir, database_url) as ww:
        areas = ww.registry.list_areas(owner_principal(ww), site)
        emit(areas, as_json, "areas", keys)


@area_app.command("delete")
def area_delete(
    area_id: Annotated[int, typer.Argument(help="area id")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete an area and its sub-areas (their devices stay on the site)."""
    with open_services(data_dir, database_url) as ww:
        ww.registry.delete_area(owner_principal(ww), area_id)


@device_app.command("import")
def device_import(
    path: Annotated[Path, typer.Argument(help="CSV or YAML file (docs/api.md#inventory)")],
    fmt: Annotated[str | None, typer.Option("--format", help="csv or yaml [from the name]")] = None,
    dry_run: Annotated[bool, typer.Option(help="check and report, change nothing")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Create or update devices from a file, idempotent by uid (nothing changes if a row is
    wrong). The tokens of new devices are printed once."""
    from wattwatch.registry.inventory import InventoryErrors, import_inventory

    kind = fmt or ("yaml" if path.suffix.lower() in (".yaml", ".yml") else "csv")
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"{exc.strerror}: {path}", 2)
    with open_services(data_dir, database_url) as ww:
        try:
            result = import_inventory(ww.registry, owner_principal(ww), data, kind, dry_run=dry_run)
        except InventoryErrors as exc:
            for problem in exc.problems:
                uid = problem.get("uid") or ""
                err.print(f"[red]{problem['where']}[/red] {uid}: {problem['message']}")
            err.print(f"nothing imported: {len(exc.problems)} row(s) to fix")
            raise typer.Exit(1) from None
    summary = result.to_json()
    if as_json:
        emit(summary, True)
        return
    emit(summary["tokens"], False, "new device tokens (shown only now)")
    console.print(
        f"{'would create' if dry_run else 'created'} {summary['created']}, updated "
        f"{summary['updated']}, unchanged {summary['unchanged']}; new areas: "
        f"{', '.join(summary['areas_created']) or 'none'}"
    )


@device_app.command("export")
def device_export(
    fmt: Annotated[str, typer.Option("--format", help="csv or yaml")] = "csv",
    site: Annotated[int | None, typer.Option(help="only this site")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write here")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write the device inventory (no secrets) as CSV or YAML."""
    from wattwatch.registry.inventory import export_inventory

    with open_services(data_dir, database_url) as ww:
        body = export_inventory(ww.registry, owner_principal(ww), fmt, site_id=site)
    if output is None:
        sys.stdout.write(body.decode())
    else:
        output.write_bytes(body)


@device_app.command("preregister")
def device_preregister(
    name: Annotated[str, typer.Option(help="device name")],
    uid: Annotated[str, typer.Option(help="device uid (as flashed)")],
    kind: Annotated[DeviceKind, typer.Option(help="monitor, plug or panel")] = DeviceKind.PLUG,
    protocol: Annotated[DeviceProtocol, typer.Option(help="how it talks")] = DeviceProtocol.NATIVE,
    topic: Annotated[str | None, typer.Option(help="Tasmota topic / Shelly prefix")] = None,
    claim_code: Annotated[
        str | None, typer.Option(help="the code on its label [generated]")
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Register a device nobody owns yet, with a claim code for its label (stored hashed)."""
    with open_services(data_dir, database_url) as ww:
        device, code = ww.registry.preregister_device(
            name=name, uid=uid, kind=kind, protocol=protocol, topic=topic, claim_code=claim_code
        )
        emit({"id": device["id"], "uid": device["uid"], "claim_code": code}, as_json)


@device_app.command("claim")
def device_claim(
    claim_code: Annotated[str, typer.Argument(help="the code on the device's label")],
    site: Annotated[int, typer.Option(help="site id")],
    area: Annotated[int | None, typer.Option(help="area id")] = None,
    name: Annotated[str | None, typer.Option(help="rename it")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Claim a pre-registered device into the organisation and a site."""
    keys = ("id", "uid", "name", "site_id", "area_id")
    with open_services(data_dir, database_url) as ww:
        device = ww.registry.claim_device(owner_principal(ww), claim_code, site, area, name)
        emit({k: device[k] for k in keys}, as_json)


@device_app.command("command")
def device_command(
    device_id: Annotated[int, typer.Argument(help="device id")],
    action: Annotated[str, typer.Argument(help="on, off or toggle")],
    timeout: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 5.0,
    server: Annotated[
        str | None, typer.Option(help="a running wattwatch, e.g. http://127.0.0.1:8080")
    ] = None,
    token: Annotated[str | None, typer.Option(help="with --server: an admin's API key")] = None,
    broker_url: BrokerUrl = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Switch a plug and wait for its answer (exit 1 if it refused, 3 if it did not answer).

    The embedded broker lives in the server process: send through it with --server and
    --token. With an external broker (--broker-url) the command goes out directly.
    """
    if server:
        _command_over_http(server, token, device_id, action, timeout, as_json)
        return
    settings = settings_from(data_dir, database_url, broker_url=broker_url)
    if not settings.broker_url:
        fail(
            "commands go through a broker: give --server URL --token KEY "
            "(a running wattwatch) or --broker-url mqtt://…",
            2,
        )
    with services(settings) as ww:
        assert ww.control is not None
        control = ww.control
        ww.enable_mqtt(consume=False)

        async def run() -> dict[str, Any]:
            assert ww.mqtt is not None
            await ww.mqtt.start()
            try:
                return await control.command(
                    owner_principal(ww), device_id, action, timeout_s=timeout, source="cli"
                )
            finally:
                await ww.mqtt.stop()

        try:
            outcome = asyncio.run(run())
        except WattwatchError as exc:
            fail(str(exc), 3 if exc.code == "device_timeout" else 1)
    emit(outcome, as_json)
    if not outcome["ok"]:
        raise typer.Exit(1)


def _command_over_http(
    server: str, token: str | None, device_id: int, action: str, timeout: float, as_json: bool
) -> None:
    import httpx

    if not token:
        fail("--server needs --token (an admin's API key)", 2)
    try:
        r = httpx.post(
            f"{server.rstrip('/')}/api/v1/devices/{device_id}/commands",
            json={"action": action, "timeout_s": timeout},
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout + 10,
        )
    except httpx.HTTPError as exc:
        fail(f"{server}: {exc}", 2)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code != 200:
        message = (body.get("error") or {}).get("message", r.text[:200])
        fail(f"{r.status_code}: {message}", 3 if r.status_code == 504 else 1)
    emit(body, as_json)
    if not body.get("ok"):
        raise typer.Exit(1)


@device_app.command("commands")
def device_commands(
    device_id: Annotated[int, typer.Argument(help="device id")],
    limit: Annotated[int, typer.Option(help="newest N")] = 20,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """The device's command audit trail: who switched it, when, and what happened."""
    keys = ("id", "requested_ms", "actor", "source", "action", "status", "state", "latency_ms")
    with open_services(data_dir, database_url) as ww:
        assert ww.control is not None
        rows = ww.control.list_commands(owner_principal(ww), device_id=device_id, limit=limit)
        emit(rows, as_json, "commands", keys)


def _schedule_event(text: str) -> dict[str, str]:
    """``off@19:00/mon-fri`` or ``on@0 7 * * 1-5`` (a cron expression)."""
    action, sep, when = text.partition("@")
    if not sep:
        raise typer.BadParameter(f"{text!r}: write ACTION@HH:MM[/DAYS] or ACTION@CRON")
    when = when.strip()
    if len(when.split()) == 5:
        return {"action": action.strip(), "cron": when}
    at, _, days = when.partition("/")
    return {"action": action.strip(), "at": at, "days": days or "daily"}


@schedule_app.command("add")
def schedule_add(
    name: Annotated[str, typer.Option(help="schedule name")],
    event: Annotated[
        list[str], typer.Option(help="ACTION@HH:MM[/DAYS] or ACTION@CRON (repeatable)")
    ],
    site: Annotated[int | None, typer.Option(help="every plug of this site")] = None,
    area: Annotated[int | None, typer.Option(help="every plug of this area")] = None,
    device: Annotated[int | None, typer.Option(help="this plug")] = None,
    appliance: Annotated[str | None, typer.Option(help="only plugs feeding this")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Add a schedule, e.g. --area 3 --appliance printer --event off@19:00/mon-fri
    --event on@07:00/mon-fri (a running server picks it up at its next look, within 30 s)."""
    from pydantic import ValidationError

    from wattwatch.control.schedules import ScheduleCreate, ScheduleEvent

    try:
        body = ScheduleCreate(
            name=name,
            site_id=site,
            area_id=area,
            device_id=device,
            appliance=appliance,
            events=[ScheduleEvent(**_schedule_event(e)) for e in event],
        )
    except ValidationError as exc:
        fail_validation(exc)
    with open_services(data_dir, database_url) as ww:
        assert ww.schedules is not None
        emit(ww.schedules.create(owner_principal(ww), body), as_json)


@schedule_app.command("list")
def schedule_list(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: AsJson = False
) -> None:
    """List schedules with their next run (site time)."""
    keys = ("id", "name", "enabled", "area_id", "site_id", "device_id", "appliance", "next_run")
    with open_services(data_dir, database_url) as ww:
        assert ww.schedules is not None
        rows = ww.schedules.list_schedules(owner_principal(ww))
        emit(rows, as_json, "schedules", keys)


@schedule_app.command("runs")
def schedule_runs(
    schedule_id: Annotated[int, typer.Argument(help="schedule id")],
    limit: Annotated[int, typer.Option(help="newest N")] = 20,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Each time the schedule fired or was missed, with how many plugs switched."""
    keys = ("id", "due_ms", "action", "status", "targets", "succeeded", "failed")
    with open_services(data_dir, database_url) as ww:
        assert ww.schedules is not None
        rows = ww.schedules.runs(owner_principal(ww), schedule_id, limit=limit)
        emit(rows, as_json, "runs", keys)


@schedule_app.command("delete")
def schedule_delete(
    schedule_id: Annotated[int, typer.Argument(help="schedule id")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a schedule (its runs go with it)."""
    with open_services(data_dir, database_url) as ww:
        assert ww.schedules is not None
        ww.schedules.delete(owner_principal(ww), schedule_id)


@user_app.command("role")
def user_role(
    email: Annotated[str, typer.Argument(help="the user's email")],
    role: Annotated[Role, typer.Argument(help="owner, admin or viewer")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Change a user's role in the first organisation (one owner always stays)."""
    with open_services(data_dir, database_url) as ww:
        principal = owner_principal(ww)
        user = ww.registry.db.user_by_email(email)
        if user is None:
            fail(f"no user {email}", 1)
        emit(ww.registry.set_user_role(principal, user["id"], role), as_json)


def _pairs_option(items: list[str] | None, what: str) -> dict[str, str] | None:
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{what} {item!r}: use KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


@site_app.command("update")
def site_update(
    site_id: Annotated[int, typer.Argument(help="site id")],
    name: Annotated[str | None, typer.Option(help="new name")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA timezone")] = None,
    address: Annotated[str | None, typer.Option(help="postal address")] = None,
    tariff: Annotated[
        str | None,
        typer.Option(help='tariff JSON, e.g. \'{"price_per_kwh": 0.2, "periods": [...]}\''),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Change a site's name, timezone, address or tariff (flat or time-of-use)."""
    from pydantic import ValidationError

    from wattwatch.tariffs import Tariff

    values: dict[str, Any] = {"name": name, "timezone": timezone, "address": address}
    values = {k: v for k, v in values.items() if v is not None}
    if tariff is not None:
        try:
            values["tariff"] = Tariff.model_validate_json(tariff).model_dump()
        except ValidationError as exc:
            fail(f"tariff: {exc.errors()[0]['msg']}", 2)
    with open_services(data_dir, database_url) as ww:
        emit(ww.registry.update_site(owner_principal(ww), site_id, values), as_json)


@site_app.command("delete")
def site_delete(
    site_id: Annotated[int, typer.Argument(help="site id")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a site with its areas (its devices stay, without a site)."""
    with open_services(data_dir, database_url) as ww:
        ww.registry.delete_site(owner_principal(ww), site_id)


@area_app.command("update")
def area_update(
    area_id: Annotated[int, typer.Argument(help="area id")],
    name: Annotated[str | None, typer.Option(help="new name")] = None,
    kind: Annotated[str | None, typer.Option(help="room, floor, line …")] = None,
    parent: Annotated[int | None, typer.Option(help="move inside this area")] = None,
    top: Annotated[bool, typer.Option("--top", help="move to the top level")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Rename an area or move it inside another (or to the top with --top)."""
    values: dict[str, Any] = {k: v for k, v in (("name", name), ("kind", kind)) if v is not None}
    if parent is not None or top:
        values["parent_id"] = None if top else parent
    with open_services(data_dir, database_url) as ww:
        emit(ww.registry.update_area(owner_principal(ww), area_id, values), as_json)


@device_app.command("update")
def device_update(
    device_id: Annotated[int, typer.Argument(help="device id")],
    name: Annotated[str | None, typer.Option(help="new name")] = None,
    site: Annotated[int | None, typer.Option(help="move to this site")] = None,
    area: Annotated[int | None, typer.Option(help="place in this area")] = None,
    kind: Annotated[DeviceKind | None, typer.Option(help="monitor, plug or panel")] = None,
    protocol: Annotated[DeviceProtocol | None, typer.Option(help="how it talks")] = None,
    topic: Annotated[str | None, typer.Option(help="Tasmota topic / Shelly prefix")] = None,
    model: Annotated[str | None, typer.Option(help="model")] = None,
    firmware: Annotated[str | None, typer.Option(help="firmware version")] = None,
    identifier: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE, e.g. serial=SN1 (repeatable)")
    ] = None,
    location: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE, e.g. room=201 (repeatable)")
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Change a device's description, place or protocol address."""
    given = {
        "name": name,
        "site_id": site,
        "area_id": area,
        "kind": kind,
        "protocol": protocol,
        "topic": topic,
        "model": model,
        "firmware": firmware,
    }
    values: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    with open_services(data_dir, database_url) as ww:
        principal = owner_principal(ww)
        if identifier:
            current = ww.registry.get_device(principal, device_id)["identifiers"] or {}
            values["identifiers"] = {**current, **(_pairs_option(identifier, "identifier") or {})}
        if location:
            values["location"] = _pairs_option(location, "location")
        device = ww.registry.update_device(principal, device_id, values)
        keys = ("id", "uid", "name", "kind", "protocol", "topic", "site_id", "area_id")
        emit(device, as_json, columns=keys)


@device_app.command("delete")
def device_delete(
    device_id: Annotated[int, typer.Argument(help="device id")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a device (its command history stays in the audit trail)."""
    with open_services(data_dir, database_url) as ww:
        ww.registry.delete_device(owner_principal(ww), device_id)


@device_app.command("channel")
def device_channel(
    device_id: Annotated[int, typer.Argument(help="device id")],
    name: Annotated[str, typer.Argument(help="channel name: mains, phase_a, ac01 …")],
    appliance: Annotated[str | None, typer.Option(help="what it feeds")] = None,
    submeter: Annotated[
        bool | None,
        typer.Option("--submeter/--no-submeter", help="behind another channel of the site"),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Add a channel or set what it feeds and whether it is a sub-meter."""
    values: dict[str, Any] = {}
    if appliance is not None:
        values["appliance"] = appliance
    if submeter is not None:
        values["submeter"] = submeter
    with open_services(data_dir, database_url) as ww:
        emit(ww.registry.set_channel(owner_principal(ww), device_id, name, values), as_json)


register_sim_commands(app)  # demo, simulate


ai_app = typer.Typer(
    help="Appliance detection, forecasting and anomaly models.", no_args_is_help=True
)
app.add_typer(ai_app, name="ai")


@ai_app.command("evaluate")
def ai_evaluate(
    dataset: Annotated[Path, typer.Option(help="folder of 1-minute house CSVs (NILM format)")],
    protocol: Annotated[str, typer.Option(help="in-house or transfer")] = "in-house",
    train: Annotated[Path | None, typer.Option(help="training house (transfer)")] = None,
    train_days: Annotated[int, typer.Option(help="valid days to train on; 0 = all")] = 14,
    extra_baselines: Annotated[bool, typer.Option(help="also CO/FHMM with a rest model")] = False,
    anomaly: Annotated[
        bool, typer.Option(help="evaluate the anomaly detectors on injected faults instead")
    ] = False,
    starts: Annotated[int, typer.Option(help="anomaly: fault times per device", min=1)] = 24,
    as_json: AsJson = False,
) -> None:
    """Score wattwatch NILM against Mean, CO and FHMM, and the day-ahead forecast, on a house."""
    try:
        from wattwatch.ai.evaluate import run_anomaly_evaluation, run_evaluation
    except ImportError as exc:
        fail(f"the AI extra is missing ({exc}); pip install 'wattwatch[ml]'", 2)
    if anomaly:
        try:
            report = run_anomaly_evaluation(dataset, n_starts=starts)
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc), 2)
        for r in report["devices"].values():  # no fault found: no delay (null, not NaN)
            if r["median_delay_h"] != r["median_delay_h"]:
                r["median_delay_h"] = None
        if as_json:
            emit(report, True)
            return
        rows = [{"device": dev, **r} for dev, r in report["devices"].items()]
        for r in rows:
            r.pop("false_alarm_examples", None)
            r.pop("false_alarms_by_kind", None)
        emit(rows, False, f"anomaly detection on {dataset.name} (injected faults)")
        return
    if protocol not in ("in-house", "transfer") or (protocol == "transfer" and train is None):
        fail("--protocol is in-house, or transfer with --train DIR", 2)
    result = run_evaluation(
        dataset, protocol, train, train_days=train_days, extra_baselines=extra_baselines
    )
    if as_json:
        print(json.dumps(result, indent=2))
        return
    emit(result["results"], False, f"NILM on {dataset.name} ({protocol})")
    console.print(f"forecast MASE: {result['forecast']}")


def _ai_device(ww: Wattwatch, device_id: int) -> tuple[Any, dict[str, Any]]:
    """The AI service and the device record (of whichever organisation owns it)."""
    device = ww.registry.db.device_by(id=device_id)
    if ww.ai is None or device is None or device["org_id"] is None:
        fail(f"no claimed device {device_id}", 2)
    return ww.ai, device


@ai_app.command("train")
def ai_train(
    device_id: Annotated[int, typer.Option("--device", help="device id (its monitor)")],
    days: Annotated[
        int | None, typer.Option(help="days of readings to learn from [WATTWATCH_AI_TRAIN_DAYS]")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="end of the training window, ISO 8601 or epoch ms")
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Train a device's appliance model and candidate clusters; store new versions.

    Learns from its stored readings, its labels and the plugs of its site.
    """
    import time

    from wattwatch.domain import parse_ts

    until_ms = None
    if until is not None:
        try:
            until_ms = parse_ts(until)
        except ValueError as exc:
            fail(f"--until: {exc}", 2)
    with open_services(data_dir, database_url) as ww:
        ai, device = _ai_device(ww, device_id)
        started = time.perf_counter()
        result = ai.train(None, device_id, days=days, until_ms=until_ms, org_id=device["org_id"])
        result["seconds"] = round(time.perf_counter() - started, 2)
        if as_json:
            emit(result, True)
            return
        rows = [
            {
                "kind": m["kind"],
                "version": m["version"],
                "fit_s": m["metrics"].get("fit_s"),
                "appliances": ", ".join(
                    f"{n} (cv F1 {a['cv_f1']})"
                    for n, a in m["metrics"].get("appliances", {}).items()
                )
                or f"{m['metrics'].get('candidates', 0)} candidates",
            }
            for m in result["models"]
        ]
        emit(rows, False, f"device {device_id}: trained in {result['seconds']} s")
        for s in result["skipped"]:
            console.print(f"skipped {s['kind']}: {s['reason']}")


@ai_app.command("models")
def ai_models(
    device_id: Annotated[int, typer.Option("--device", help="device id")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Stored model versions of a device with their metrics, newest first."""
    with open_services(data_dir, database_url) as ww:
        ai, _device = _ai_device(ww, device_id)
        models = ai.ai.list_models(device_id)
        if as_json:
            emit(models, True)
            return
        emit(
            [
                {
                    "kind": m["kind"],
                    "version": m["version"],
                    "created_ms": m["created_ms"],
                    "minutes": m["metrics"].get("minutes"),
                    "fit_s": m["metrics"].get("fit_s"),
                }
                for m in models
            ],
            False,
            f"models of device {device_id}",
        )


def main() -> None:  # pragma: no cover - console entry
    app()
