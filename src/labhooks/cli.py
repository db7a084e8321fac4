"""The `labhooks` command: one program, several roles (SPEC §5)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from labhooks.domain.errors import LabhooksError
from labhooks.domain.people import TokenScope
from labhooks.ingestion.publisher import PublishingRefused, Stopped, TokenRefused
from labhooks.security import Passwords, SecretBox
from labhooks.services.tokens import check_password, create_token
from labhooks.services.users import create_server_admin
from labhooks.settings import Settings
from labhooks.storage import migrate as migrations
from labhooks.storage.database import Database, UnsupportedDatabase

if TYPE_CHECKING:
    from labhooks.ingestion.simulator import Model

app = typer.Typer(
    help="labhooks: webhook subscriptions and delivery for laboratory devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
T = TypeVar("T")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"labhooks: {message}", err=True)
    return typer.Exit(1)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "LABHOOKS_" + str(error["loc"][0]).upper()
        raise _fail(f"{name}: {error['msg']}") from None


def _with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Runs `work` on a fresh Database, turning what can go wrong into one line and exit 1."""

    async def run() -> T:
        database = Database(settings.database_url)
        try:
            return await work(database)
        finally:
            await database.dispose()

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(run())
    except UnsupportedDatabase as exc:
        raise _fail(str(exc)) from None
    except LabhooksError as exc:
        raise _fail(exc.detail) from None
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise _fail(f"cannot use the database {settings.database_url}: {reason}") from None


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    settings = _settings()
    revision = _with_database(settings, _upgrade)
    typer.echo(f"database at revision {revision}")


async def _upgrade(database: Database) -> str | None:
    await migrations.upgrade(database)
    return await migrations.current_revision(database)


@app.command()
def bootstrap(
    email: Annotated[str, typer.Option(help="E-mail of the server administrator")],
    password: Annotated[str, typer.Option(help="At least 8 characters")],
) -> None:
    """Create the first server administrator (if there is none) and print an API token for it.

    Run again with the same credentials, it prints a new token; the token is the last line.
    """
    settings = _settings()

    async def work(database: Database) -> tuple[bool, str]:
        await migrations.upgrade(database)
        async with database.session() as db:
            passwords = Passwords.of(settings)
            created = await create_server_admin(db, email, password, passwords) is not None
            user = await check_password(db, email, password, passwords)
            if not user.is_server_admin:
                raise LabhooksError(f"{email} is not a server administrator")
            _, token = await create_token(db, user, TokenScope.FULL, "bootstrap")
            return created, token

    created, token = _with_database(settings, work)
    typer.echo(
        f"created server administrator {email}" if created else f"{email} exists already",
        err=False,
    )
    typer.echo(token)


LogFormat = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        envvar="LABHOOKS_LOG_FORMAT",
        metavar="json|text",
        help="json: one JSON object per line; text: readable lines. Default: text on a "
        "terminal, json otherwise (docs/observability.md)",
        show_default=False,
    ),
]


def _log_format(given: str | None) -> str:
    """The log format of a serving command; also checks, before anything starts, what the
    metrics need of the environment (docs/observability.md)."""
    from labhooks.observability.logs import resolve_format

    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shared and not Path(shared).is_dir():
        raise _fail(f"PROMETHEUS_MULTIPROC_DIR {shared} is not a directory; create it first")
    try:
        return resolve_format(given)
    except ValueError as exc:
        raise _fail(str(exc)) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    migrate: Annotated[bool, typer.Option(help="Migrate the database first")] = True,
    worker: Annotated[
        bool, typer.Option(help="Run a delivery worker in this process (--no-worker: API only)")
    ] = True,
    log_format: LogFormat = None,
) -> None:
    """Run the API with a delivery worker, on an embedded SQLite file unless
    LABHOOKS_DATABASE_URL says otherwise."""
    settings = _settings()
    chosen_format = _log_format(log_format)  # before the imports: they make the metrics
    import uvicorn

    from labhooks.app import create_app
    from labhooks.serving import uvicorn_options

    if migrate:
        _with_database(settings, _upgrade)
    _logging(chosen_format)
    typer.echo(f"labhooks on http://{host}:{port} (API docs at /docs)")
    uvicorn.run(
        create_app(settings, with_worker=worker),
        host=host,
        port=port,
        log_level="info",
        log_config=None,  # uvicorn's lines go through labhooks' handler, in its format
        **uvicorn_options(settings),
    )


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    simulate_rate: Annotated[
        float, typer.Option(min=0, help="Readings a second from the simulated lab (0: none)")
    ] = 1.0,
    log_format: LogFormat = None,
) -> None:
    """Serve a demo on the embedded SQLite file: a demo organisation with logins and devices,
    and a request inspector at /demo/inspector/ to watch deliveries arrive."""
    settings = _settings()
    chosen_format = _log_format(log_format)  # before the imports: they make the metrics
    import uvicorn

    from labhooks.app import create_app
    from labhooks.demo import (
        DEMO_PASSWORD,
        INSPECTOR_PATH,
        DemoLogins,
        Inspector,
        seed,
        simulated_lab,
    )
    from labhooks.serving import uvicorn_options

    if not settings.allowed_networks:  # the inspector is on this machine
        settings = settings.model_copy(update={"allowed_networks": "127.0.0.0/8,::1/128"})
    # The port first: nothing is written or printed for a port the demo cannot serve, and the
    # socket bound here is the one served, so what is printed is where it answers.
    listening = socket.socket()
    try:
        listening.bind(("127.0.0.1", port))
    except OSError as exc:
        listening.close()
        raise _fail(
            f"port {port} cannot be used ({exc.strerror}); choose another with --port"
        ) from None
    port = listening.getsockname()[1]
    base = f"http://127.0.0.1:{port}"

    async def prepare(database: Database) -> DemoLogins:
        await migrations.upgrade(database)
        box = SecretBox(settings.resolved_secret_key())
        return await seed(database, base, Passwords.of(settings), box)

    logins = _with_database(settings, prepare)
    _logging(chosen_format)
    application = create_app(settings)
    application.include_router(Inspector().router())
    typer.echo(
        f"labhooks demo on {base}/  (password for every login: {DEMO_PASSWORD})\n"
        f"  scientist (member):        {logins.member}\n"
        f"  lab administrator:         {logins.org_admin}\n"
        f"  server administrator:      {logins.server_admin}\n"
        f"  request inspector:         {base}{INSPECTOR_PATH}\n"
        f"  API docs:                  {base}/docs\n"
        f"  simulated lab:             {simulate_rate:g} readings/s (--simulate-rate)"
    )
    config = uvicorn.Config(
        application, log_level="warning", log_config=None, **uvicorn_options(settings)
    )
    server = uvicorn.Server(config)

    async def serve_with_lab() -> None:
        stop = asyncio.Event()
        lab = asyncio.create_task(
            _when_started(server, simulated_lab(base, logins, simulate_rate, stop), stop)
        )
        try:
            await server.serve(sockets=[listening])
        finally:
            stop.set()
            await lab

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        if simulate_rate > 0:
            runner.run(serve_with_lab())
        else:
            runner.run(server.serve(sockets=[listening]))


async def _when_started(server: Any, work: Awaitable[None], stop: asyncio.Event) -> None:
    """`work` once the server answers; a failure of it is logged, never fatal to the server."""
    # uvicorn.Server tells that it started by a flag, not an event
    while not server.started and not stop.is_set():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    try:
        await work
    except Stopped:  # the demo stopped while the lab waited for it
        pass
    except Exception:
        logging.getLogger("labhooks.demo").exception("the simulated lab stopped")


@app.command("worker")
def run_worker(log_format: LogFormat = None) -> None:
    """Run a delivery worker alone; start as many as needed against one PostgreSQL.
    Stops cleanly on SIGINT/SIGTERM, finishing the attempts in flight."""
    settings = _settings()
    _logging(_log_format(log_format))

    # after the checks: the worker's metrics are made as it is imported
    from labhooks.delivery.worker import run_worker
    from labhooks.services import retention
    from labhooks.services.lab_rules import run_timer

    async def work(database: Database) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        box = SecretBox(settings.resolved_secret_key())
        await asyncio.gather(
            run_worker(settings, database, box, stop),
            run_timer(database, stop, settings.poll_interval),
            retention.run_timer(database, stop, settings),
        )

    _with_database(settings, work)


ApiUrl = Annotated[str, typer.Option("--url", help="labhooks' base URL")]
Token = Annotated[
    str,
    typer.Option(
        envvar="LABHOOKS_TOKEN",
        help="A publish-only token of the organisation (POST /api/v1/tokens with scope publish)",
    ),
]


MetricsPort = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=65535,
        help="Serve the bridge's counters for Prometheus on 127.0.0.1:PORT/metrics",
    ),
]


def _serve_bridge_metrics(bridge: str, counts: Callable[[], Mapping[str, int]], port: int) -> None:
    from labhooks.observability.bridges import serve_bridge_metrics

    try:
        serve_bridge_metrics(bridge, counts, port)
    except OSError as exc:
        raise _Failed(f"cannot serve metrics on 127.0.0.1:{port}: {exc.strerror or exc}") from None


class _Failed(Exception):
    """What a long-running command says, in one line, when it cannot go on."""


def _api_root(url: str) -> str:
    """labhooks' API root (…/api/v1) from `--url` (its base URL, or the API root itself)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(f"--url {url!r} is not labhooks' base URL, such as http://127.0.0.1:8000")
    return f"{url.rstrip('/').removesuffix('/api/v1')}/api/v1"


def _until_stopped(work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Runs `work(stop)` until it returns; SIGINT and SIGTERM set `stop`. What labhooks or the
    command refuses ends it in one line."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        with contextlib.suppress(Stopped):  # told to stop while waiting for labhooks
            await work(stop)

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run())
    except TokenRefused as exc:
        raise _fail(f"labhooks refused the token: {exc}") from None
    except (PublishingRefused, _Failed) as exc:
        raise _fail(str(exc)) from None


@app.command("mqtt-bridge")
def mqtt_bridge(
    token: Token,
    broker: Annotated[
        str,
        typer.Option(
            help="mqtt://host:port (with user:password@ before the host if the broker asks), "
            "or mqtts:// for TLS"
        ),
    ] = "mqtt://127.0.0.1:1883",
    url: ApiUrl = "http://127.0.0.1:8000",
    prefix: Annotated[
        str, typer.Option(help="First topic level(s), such as labhooks or site1/labhooks")
    ] = "labhooks",
    client_id: Annotated[
        str, typer.Option(help="MQTT client id: the broker keeps this bridge's session by it")
    ] = "labhooks-mqtt-bridge",
    ca_file: Annotated[str | None, typer.Option(help="CA certificates for mqtts://")] = None,
    metrics_port: MetricsPort = None,
) -> None:
    """Turn MQTT messages on {prefix}/{device_id}/{channel_key}/{event_type} into events
    (docs/devices.md). Stops cleanly on SIGINT/SIGTERM."""
    from labhooks.ingestion.logs import counts_line
    from labhooks.ingestion.mqtt import Broker, MqttBridge, check_prefix
    from labhooks.ingestion.publisher import Publisher

    api = _api_root(url)
    try:
        where = Broker.parse(broker, ca_file)
        check_prefix(prefix)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _logging()

    async def bridge(stop: asyncio.Event) -> None:
        async with Publisher(api, token, stop=stop) as publisher:
            running = MqttBridge(where, publisher, prefix, client_id)
            if metrics_port is not None:
                _serve_bridge_metrics(
                    "mqtt",
                    lambda: running.counts + Counter(retries=publisher.counts["retries"]),
                    metrics_port,
                )
            try:
                await running.run(stop)
            finally:
                logging.getLogger("labhooks.mqtt").info("stopped: %s", counts_line(running.counts))

    _until_stopped(bridge)


@app.command("opcua-bridge")
def opcua_bridge(
    token: Token,
    config: Annotated[
        Path,
        typer.Option(help="TOML: the endpoints, LADS discovery, node mappings (docs/devices.md)"),
    ],
    url: ApiUrl = "http://127.0.0.1:8000",
    metrics_port: MetricsPort = None,
) -> None:
    """Turn changes on OPC UA servers (LADS devices, mapped nodes) into events
    (docs/devices.md). Stops cleanly on SIGINT/SIGTERM."""
    from labhooks.ingestion.opcua import OpcUaBridge
    from labhooks.ingestion.opcua_config import ConfigError, load_config

    api = _api_root(url)
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    _logging()

    async def bridge(stop: asyncio.Event) -> None:
        running = OpcUaBridge(loaded, api, token)
        if metrics_port is not None:
            _serve_bridge_metrics("opcua", lambda: running.counts, metrics_port)
        await running.run(stop)

    _until_stopped(bridge)


SIMULATION_ROUTES = ("http", "mqtt")


@app.command()
def simulate(
    token: Annotated[
        str | None,
        typer.Option(
            envvar="LABHOOKS_TOKEN",
            help="An organisation administrator's token (it makes the simulated devices if "
            "they are missing); not needed with --serve-opcua",
        ),
    ] = None,
    url: ApiUrl = "http://127.0.0.1:8000",
    via: Annotated[
        str, typer.Option(help="http (the API) or mqtt (to a broker, for mqtt-bridge)")
    ] = "http",
    broker: Annotated[str, typer.Option(help="With --via mqtt")] = "mqtt://127.0.0.1:1883",
    prefix: Annotated[str, typer.Option(help="With --via mqtt: first topic level")] = "labhooks",
    serve_opcua: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            metavar="PORT",
            help="Serve the devices on a LADS OPC UA server on this port, for opcua-bridge, "
            "instead of publishing",
        ),
    ] = None,
    opcua_host: Annotated[
        str, typer.Option(help="With --serve-opcua: the address it listens on")
    ] = "127.0.0.1",
    rate: Annotated[float, typer.Option(min=0.01, help="Readings per second, in all")] = 2.0,
    count: Annotated[int | None, typer.Option(help="Stop after this many readings")] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same readings")] = 1,
) -> None:
    """Simulated lab devices (a balance, a pH meter, an incubator, an HPLC, a barcode scanner)
    publishing through the API, through MQTT into `labhooks mqtt-bridge`, or served on a LADS
    OPC UA server for `labhooks opcua-bridge`."""
    from aiomqtt import MqttError

    from labhooks.ingestion import simulator
    from labhooks.ingestion.mqtt import Broker, check_prefix
    from labhooks.ingestion.publisher import Publisher

    models = simulator.lab(seed)
    if serve_opcua is not None:
        _check_port_free(opcua_host, serve_opcua)
        _logging()
        _until_stopped(lambda stop: _serve_lads(models, opcua_host, serve_opcua, rate, count, stop))
        return
    if via not in SIMULATION_ROUTES:
        raise _fail(
            f"--via must be one of {', '.join(SIMULATION_ROUTES)}, not {via!r} "
            "(--serve-opcua PORT serves the devices over OPC UA)"
        )
    if not token:
        raise _fail(f"--via {via} needs --token (or LABHOOKS_TOKEN)")
    api = _api_root(url)
    try:
        where = Broker.parse(broker) if via == "mqtt" else None
        check_prefix(prefix)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _logging()

    async def run(stop: asyncio.Event) -> None:
        try:
            device_ids = await simulator.ensure_devices(api, token, models, stop)
        except simulator.DevicesNotSetUp as exc:
            raise _Failed(str(exc)) from None
        if where is None:
            async with Publisher(api, token, stop=stop) as publisher:
                sink: simulator.Sink = simulator.ApiSink(publisher)
                await simulator.Simulation(models, device_ids, sink, rate).run(stop, count)
            return
        try:
            async with where.client(f"labhooks-simulator-{seed}") as client:
                sink = simulator.MqttSink(client, prefix)
                await simulator.Simulation(models, device_ids, sink, rate).run(stop, count)
        except MqttError as exc:
            raise _Failed(f"cannot reach the broker {broker}: {exc}") from None

    _until_stopped(run)


def _check_port_free(host: str, port: int) -> None:
    """Said in one line before the server is built: asyncua logs a traceback of its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as exc:
        raise _fail(f"cannot serve OPC UA on {host}:{port}: {exc.strerror or exc}") from None


async def _serve_lads(
    models: Sequence[Model],
    host: str,
    port: int,
    rate: float,
    count: int | None,
    stop: asyncio.Event,
) -> None:
    """The simulated devices on a LADS server; the bridge makes them in labhooks, by name."""
    from labhooks.ingestion import simulator
    from labhooks.ingestion.lads_server import LadsServer

    async with LadsServer() as server:
        sink = simulator.LadsSink(server, models)
        try:
            served = await server.start(port, host=host)
        except OSError as exc:  # the port is taken, say
            raise _Failed(f"cannot serve OPC UA on {host}:{port}: {exc}") from None
        logging.getLogger("labhooks.simulator").info("serving %s", served)
        names = {m.name: m.name for m in models}
        await simulator.Simulation(models, names, sink, rate).run(stop, count)


@app.command()
def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go, delete nothing")
    ] = False,
    older_than_days: Annotated[
        str | None,
        typer.Option(metavar="N", help="Purge what is older than N days (LABHOOKS_RETENTION_DAYS)"),
    ] = None,
) -> None:
    """Purge events older than the retention period with their deliveries and attempts, now,
    as the workers do on their timer (docs/operations.md); never an event with a pending
    delivery. Prints what went."""
    from labhooks.storage import retention
    from labhooks.storage.models import utcnow

    settings = _settings()
    days = _retention_days(older_than_days, settings)
    before = retention.cutoff(utcnow(), days)
    age = f"published before {before:%Y-%m-%d %H:%M} UTC, {days} days ago"
    if dry_run:
        counted = _with_database(settings, lambda db: retention.count_expired(db, before))
        typer.echo(f"would purge {counted} ({age}); nothing was deleted")
        return
    size, pause = settings.retention_batch_size, settings.retention_pause
    purged = _with_database(settings, lambda db: retention.purge(db, before, size, pause))
    typer.echo(f"purged {purged} ({age})")


def _retention_days(given: str | None, settings: Settings) -> int:
    """--older-than-days as a whole number of days, else the setting (0 there: none)."""
    if given is None:
        if settings.retention_days == 0:
            raise _fail(
                "LABHOOKS_RETENTION_DAYS is 0 (keep everything): name an age with "
                "--older-than-days N"
            )
        return settings.retention_days
    try:
        days = int(given)
    except ValueError:
        raise _fail(f"--older-than-days must be a whole number of days, not {given!r}") from None
    if days < 1:
        raise _fail(f"--older-than-days must be at least 1, not {days}")
    return days


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document, for scripts")] = False,
) -> None:
    """The queue, the delivery rate, failing subscriptions and the workers seen, read from the
    database (docs/observability.md). Exits 1 when the database cannot be read."""
    import json

    from rich.console import Console
    from sqlalchemy.engine import make_url

    from labhooks.observability.status import as_json as status_json
    from labhooks.observability.status import read_status, render

    settings = _settings()
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        # opening it would create an empty file: the folder or the variable is wrong
        raise _fail(f"there is no database at {url.database} (LABHOOKS_DATABASE_URL)")
    found = _with_database(settings, lambda db: read_status(db, settings.worker_heartbeat_s))
    if as_json:
        typer.echo(json.dumps(status_json(found), indent=2))
    else:
        render(found, Console())


def _logging(log_format: str | None = None) -> None:
    """Log lines to standard error; `log_format` json or text (observability.logs), else the
    plain lines the bridges and the simulator write."""
    if log_format is not None:
        from labhooks.observability.logs import configure

        configure(log_format)
        logging.getLogger("asyncua").setLevel(logging.WARNING)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("asyncua").setLevel(logging.WARNING)  # a line per node it builds


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform
        return None
    return uvloop.new_event_loop


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
