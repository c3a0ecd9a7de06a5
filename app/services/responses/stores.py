"""The one boundary for storing responses: what a store does, and what it answers.

A store is chosen once at start-up for the engine (PostgreSQL: pg_store, a bare asyncpg
connection and one statement per submission or batch; SQLite: session_store) and reached
through `deps`. Stores report outcomes; the rules (rules.py) alone turn them into errors.
"""

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.models.auth import Principal
from app.security import TokenService
from app.services.answers import CompiledQuestionnaire, PageRows


@dataclass(frozen=True)
class Row:
    """A checked response ready to store: its `response` row and its answer pages' values."""

    head: dict[str, Any]
    pages: PageRows  # per answer page, its rows (see services/answers/)

    @property
    def id(self) -> uuid.UUID:
        response_id: uuid.UUID = self.head["id"]
        return response_id


@dataclass(frozen=True)
class Inserted:
    """What one storing statement found and did.

    Nothing was stored unless the questionnaire was published, the principal still as it was
    when resolved, and every territory known; `ids` are those of the rows stored (a row whose
    id exists already is left alone).
    """

    status: str | None  # the questionnaire's; None when it is gone
    authorized: bool
    ids: set[uuid.UUID]
    territory_refused: bool = False


# Whether a principal may submit to a questionnaire (the rule lives in rules.py).
Accept = Callable[[Principal | None, CompiledQuestionnaire], bool]


class ResponseStore(Protocol):
    async def submitter(
        self,
        tokens: TokenService,
        token: str | None,
        questionnaire_id: uuid.UUID,
        accept: Accept,
    ) -> tuple[Principal | None, CompiledQuestionnaire]:
        """The caller (None without a token) and the questionnaire, compiled."""
        ...

    async def insert(
        self,
        questionnaire: CompiledQuestionnaire,
        principal: Principal | None,
        rows: Sequence[Row],
        *,
        many: bool = False,
    ) -> Inserted:
        """Store the rows whose id is new, atomically, as one unit."""
        ...

    async def heads(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Mapping[str, Any]]:
        """Stored `response` rows by id (for replays: questionnaire, fingerprint, times)."""
        ...

    async def answer_pages(
        self, questionnaire: CompiledQuestionnaire, response_id: uuid.UUID
    ) -> PageRows:
        """A stored response's rows per answer page, as check_answers gives them (for a
        replay's answers as first stored, where a type keeps its spelling)."""
        ...

    async def unknown_territories(self, codes: set[str]) -> set[str]: ...

    async def still_allowed(self, principal: Principal | None) -> bool:
        """Whether the principal is still as it was when resolved (not revoked, same roles)."""
        ...
