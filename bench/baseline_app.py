"""The baseline for bench/submit.py: FastAPI + Pydantic + one raw asyncpg INSERT per request.

Run by the benchmark as `uvicorn bench.baseline_app:app`; reads BENCH_DSN (a plain
postgresql:// DSN) and writes into a scratch table it creates.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI
from pydantic import BaseModel


class Respondent(BaseModel):
    group: str
    gender: str | None = None
    age_band: str | None = None
    territory_code: str | None = None


class Submission(BaseModel):
    id: uuid.UUID | None = None
    respondent: Respondent
    answers: dict[str, Any]
    language: str | None = None
    channel: str | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=10, max_size=10)
    await app.state.pool.execute(
        "CREATE TABLE IF NOT EXISTS baseline_response (id uuid PRIMARY KEY, body jsonb NOT NULL)"
    )
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/submit", status_code=201)
async def submit(item: Submission) -> dict[str, str]:
    row_id = item.id or uuid.uuid4()
    await app.state.pool.execute(
        "INSERT INTO baseline_response (id, body) VALUES ($1, $2::jsonb)",
        row_id,
        item.model_dump_json(),
    )
    return {"id": str(row_id)}
