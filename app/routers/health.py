"""Liveness, readiness and Prometheus metrics: public, for load balancers and scrapers."""

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.db import ping
from app.errors import Unavailable
from app.models.health import Health

router = APIRouter(tags=["operations"])
# Included only when KENES_EXPOSE_METRICS is true (the default).
metrics_router = APIRouter(tags=["operations"])

READY_TIMEOUT_SECONDS = 3.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """200 while the process runs."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"description": "The database does not answer"}},
)
async def readyz(request: Request) -> Health:
    """200 when the database answers a round trip, else 503 with Retry-After."""
    try:
        await asyncio.wait_for(ping(request.app.state.engine), READY_TIMEOUT_SECONDS)
    except Exception as error:
        raise Unavailable() from error
    return Health(status="ok", database="ok")


@metrics_router.get(
    "/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests by route and status, latencies, requests in flight,
    export streams open, rate-limit refusals, both database pools, process and GC figures;
    with several workers, the totals of all of them."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
