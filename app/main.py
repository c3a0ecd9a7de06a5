"""The application factory: settings, engine, routers, middleware and error handlers."""

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.config import Settings, SettingsError, get_settings
from app.db import create_engine, create_raw_pool, create_sessionmaker, session_scope
from app.docs import install_docs
from app.errors import install_error_handlers
from app.log import configure_logging
from app.metrics import HttpMetrics
from app.middleware import BodyGuardMiddleware, RequestContextMiddleware
from app.migrate import upgrade_to_head
from app.openapi import TAGS, install_openapi, operation_id
from app.protocol import install_protocol
from app.routers import (
    aggregate_views,
    aggregates,
    attachments,
    auth,
    bodies,
    calendar_feeds,
    consultations,
    elections,
    form_media,
    health,
    official_aggregates,
    openrosa,
    questionnaires,
    responses,
    territories,
)
from app.security import TokenService
from app.services.auth import RememberedPrincipals, ensure_bootstrap_admin
from app.services.openrosa.media import MediaCache
from app.services.openrosa.submission import ShapeCache
from app.services.openrosa.xform import XFormCache
from app.services.questionnaires import COMPILED_INFO_KEY, CompiledQuestionnaires
from app.services.responses.pg_store import PgResponseStore
from app.services.responses.session_store import SessionResponseStore
from app.streaming import StreamSlots

logger = logging.getLogger("kenes")

API_PREFIX = "/api/v1"
UPLOAD_CONCURRENCY = 2
BATCH_CONCURRENCY = 2
GIL_SWITCH_SECONDS = 0.0005

CORS_EXPOSED_HEADERS = [
    "Allow",
    "Content-Disposition",
    "ETag",
    "Location",
    "Retry-After",
    "WWW-Authenticate",
    "X-Request-ID",
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if settings.migrate_on_start:
        await upgrade_to_head(app.state.engine)
    async for session in session_scope(app.state.sessionmaker):
        if await ensure_bootstrap_admin(session, settings):
            logger.info("bootstrap admin created", extra={"email": settings.bootstrap_admin_email})
    app.state.raw_pool = await create_raw_pool(settings)
    if app.state.raw_pool is not None:
        app.state.response_store = PgResponseStore(
            app.state.sessionmaker,
            app.state.raw_pool,
            app.state.compiled_questionnaires,
            app.state.remembered_principals,
        )
    app.state.metrics.start(sqlalchemy=app.state.engine, asyncpg=app.state.raw_pool)
    # Everything loaded so far lives as long as the process: keep it out of the garbage
    # collector's sweeps, which otherwise show up as stalls in the latency tail (bench/submit.py:
    # p99 88 -> 31 ms). Young collections every 10,000 rather than 700 net allocations: they
    # took 3% of a submission's time and find little (requests rarely leave cycles behind).
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    # Batches, uploads and exports are checked in worker threads while the event loop serves
    # everyone else. A thread waiting for the GIL gets it after the switch interval, and the
    # loop needs it dozens of times per request: at CPython's 5 ms, /healthz took 1.0 s
    # during a 14 MB batch; at 0.5 ms, 0.04 s (tests/test_hardening.py).
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    logger.info("kenes started", extra={"database": app.state.engine.url.get_backend_name()})
    try:
        yield
    finally:
        await app.state.metrics.stop()
        if app.state.raw_pool is not None:
            await app.state.raw_pool.close()
        await app.state.engine.dispose()
        await app.state.export_engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="Kenes",
        version=__version__,
        summary="Civic surveys and public-consultation monitoring",
        lifespan=lifespan,
        # Metrics are ours (Prometheus, /metrics); FastAPI's OpenTelemetry hooks would only
        # check on every request for a provider nobody configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # served from local files by install_docs, not from a CDN
        redoc_url=None,
        # KENES_EXPOSE_DOCS=false serves neither the interactive docs nor the OpenAPI document.
        openapi_url="/openapi.json" if settings.expose_docs else None,
        generate_unique_id_function=operation_id,
        openapi_tags=TAGS,
    )
    app.state.settings = settings
    # No redirect from /path/ to /path: Starlette builds its Location from the Host header,
    # which the client chooses. /path/ is simply 404.
    app.router.redirect_slashes = False
    app.state.engine = create_engine(settings)
    # Published questionnaires compiled once (the sessions of both engines share them), and the
    # principals the PostgreSQL submission path resolved (services/auth/principals.py).
    app.state.compiled_questionnaires = CompiledQuestionnaires()
    app.state.remembered_principals = RememberedPrincipals()
    per_database = {COMPILED_INFO_KEY: app.state.compiled_questionnaires}
    app.state.sessionmaker = create_sessionmaker(app.state.engine, per_database)
    # Exports stream for as long as the client reads: they get connections of their own.
    app.state.export_engine = create_engine(settings, pool_size=settings.export_concurrency)
    app.state.export_sessionmaker = create_sessionmaker(app.state.export_engine, per_database)
    app.state.export_slots = StreamSlots(settings.export_concurrency)
    app.state.raw_pool = None  # PostgreSQL: set by the lifespan (the submission hot path)
    # The response store, chosen once for the engine (services/responses/stores.py): the
    # lifespan puts PostgreSQL's in its place once the raw pool is up.
    app.state.response_store = SessionResponseStore(app.state.sessionmaker)
    app.state.metrics = HttpMetrics()
    app.state.tokens = TokenService(settings)
    app.state.password_hashing = anyio.CapacityLimiter(settings.password_hash_concurrency)
    # Uploads parsed and checked at once per process, each in a worker thread.
    app.state.upload_work = anyio.CapacityLimiter(UPLOAD_CONCURRENCY)
    # Batches of responses checked at once per process, each in a worker thread.
    app.state.batch_work = anyio.CapacityLimiter(BATCH_CONCURRENCY)
    # OpenRosa: XForms of published versions (built once each, they never change) and what
    # reading their instances needs, most recently used kept.
    app.state.xforms = XFormCache()
    app.state.openrosa_shapes = ShapeCache()
    # OpenRosa form media: territories.csv per territory-table fingerprint and language.
    app.state.openrosa_media = MediaCache()

    install_error_handlers(app)
    install_openapi(app)
    install_protocol(app)
    if settings.expose_docs:
        install_docs(app)
    # Routes are matched in order: the submission routes, the busiest, come first.
    app.include_router(responses.router)
    app.include_router(attachments.router)
    app.include_router(health.router)
    if settings.expose_metrics:
        app.include_router(health.metrics_router)
    app.include_router(auth.router)
    app.include_router(questionnaires.router)
    app.include_router(form_media.router)
    app.include_router(aggregates.router)
    app.include_router(aggregate_views.router)
    app.include_router(territories.router)
    app.include_router(elections.router)
    app.include_router(consultations.router)
    app.include_router(calendar_feeds.router)
    app.include_router(official_aggregates.router)
    app.include_router(openrosa.router)

    # Added innermost first: the request context wraps everything, so even a 413 gets an id.
    app.add_middleware(
        BodyGuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        max_batch_bytes=settings.max_batch_bytes,
        multipart_limits=(
            (openrosa.SUBMISSION_PATH, settings.openrosa_max_submission_bytes),
            (questionnaires.IMPORT_PATH, settings.max_upload_bytes + settings.form_media_max_bytes),
        ),
        multipart_also=((bodies.SUBMIT_PATH, bodies.multipart_limit(settings)),),
        raw_limits=(
            (attachments.PUT_PATH, settings.max_attachment_bytes),
            (form_media.PUT_PATH, settings.form_media_max_file_bytes),
        ),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match", "X-Request-ID"],
            # What a web app must read: an export's file name, ETags, created resources,
            # back-off times, why a token was refused, the id to quote.
            expose_headers=CORS_EXPOSED_HEADERS,
        )
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    return app


def _app_from_environment() -> FastAPI:
    try:
        return create_app()
    except SettingsError as error:
        print(f"kenes: {error}", file=sys.stderr)  # noqa: T201 - start-up refusal, one line
        raise SystemExit(2) from None


app = _app_from_environment()
