"""The `kenes` command: serve, migrate, create-user, demo-data."""

import argparse
import asyncio
import getpass
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

from app.config import Settings, SettingsError, load_settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.server import GuardedHttpProtocol

    if settings.migrate_on_start:
        # Migrate once here rather than racing in every worker's start-up.
        asyncio.run(_migrate(settings))
        os.environ["KENES_AUTO_MIGRATE"] = "false"
    shared_metrics = _share_metrics(args.workers)
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,  # the app configures JSON logging itself
        access_log=False,  # the app writes its own access lines, with request ids
        date_header=False,  # the app sends Date itself (app/middleware.py), once
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        # Slow and idle clients are dropped (see app/server.py for what a proxy adds).
        http=GuardedHttpProtocol,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=64 * 1024,
    )
    if shared_metrics is not None:
        shutil.rmtree(shared_metrics, ignore_errors=True)
    return 0


def _share_metrics(workers: int) -> str | None:
    """Several workers add up their metrics in prometheus_client's multiprocess mode: set
    before the workers start (they import prometheus_client afresh), to a directory of this run
    alone, since stale files of an earlier run would be counted too."""
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    directory = tempfile.mkdtemp(prefix="kenes-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


async def _migrate(settings: Settings) -> int:
    from app.db import create_engine
    from app.migrate import upgrade_to_head

    engine = create_engine(settings, one_shot=True)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    print("database is at the newest revision")  # noqa: T201
    return 0


async def _demo_data(settings: Settings) -> int:
    from app.db import create_engine, create_sessionmaker, session_scope
    from app.demo import load_demo_data

    engine = create_engine(settings, one_shot=True)
    try:
        async for session in session_scope(create_sessionmaker(engine)):
            added = await load_demo_data(session)
    finally:
        await engine.dispose()
    print(json.dumps({"added": added}))  # noqa: T201
    return 0


async def _create_user(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from app.db import create_engine, create_sessionmaker, session_scope
    from app.errors import AppError
    from app.models.auth import UserCreate
    from app.services import audit
    from app.services.auth import create_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password (at least 12 characters): ")
        if getpass.getpass("Repeat it: ") != password:
            print("kenes: the passwords differ", file=sys.stderr)  # noqa: T201
            return 2
    try:
        data = UserCreate(
            email=args.email,
            password=password,
            full_name=args.full_name or args.email,
            roles=[role.strip() for role in args.roles.split(",") if role.strip()],
        )
    except ValidationError as error:
        problem = error.errors()[0]
        print(f"kenes: {problem['loc'][0]}: {problem['msg']}", file=sys.stderr)  # noqa: T201
        return 2
    engine = create_engine(settings, one_shot=True)
    try:
        async for session in session_scope(create_sessionmaker(engine)):
            user = await create_user(session, audit.SYSTEM, data)
    except AppError as error:
        print(f"kenes: {error.detail}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        await engine.dispose()
    print(json.dumps({"id": str(user.id), "email": user.email, "roles": user.roles}))  # noqa: T201
    return 0


def _run_async(
    command: Callable[[Settings], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace, Settings], int]:
    return lambda _args, settings: asyncio.run(command(settings))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kenes", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-*")
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database to the newest schema")
    migrate.set_defaults(handler=_run_async(_migrate))

    create_user = commands.add_parser("create-user", help="create a user (e.g. the first admin)")
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--roles", default="admin", help="comma list, e.g. admin,analyst")
    create_user.add_argument("--full-name", default=None)
    create_user.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create_user.set_defaults(
        handler=lambda args, settings: asyncio.run(_create_user(args, settings))
    )

    demo = commands.add_parser("demo-data", help="load the demo data set (idempotent)")
    demo.set_defaults(handler=_run_async(_demo_data))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"kenes: {error}", file=sys.stderr)  # noqa: T201
        return 2
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
