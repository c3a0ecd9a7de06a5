"""Users, collectors, the audit log and their schemas."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from annotated_types import MaxLen, MinLen
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, StringConstraints
from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel

from app.db import JSONType, UTCDateTime, utcnow
from app.models import examples as ex
from app.models.examples import examples

MIN_PASSWORD_LENGTH = 12
# Long enough for any passphrase, short enough that hashing it is no denial of service.
MAX_PASSWORD_LENGTH = 256
COLLECTOR_TOKEN_PREFIX = "kc_"  # noqa: S105 - a prefix, not a secret


class Role(StrEnum):
    admin = "admin"
    coordinator = "coordinator"
    observer = "observer"
    analyst = "analyst"


class User(SQLModel, table=True):
    __tablename__ = "user_account"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    full_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=200)
    roles: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    is_active: bool = True
    # Raised when the password changes or the user is deactivated: tokens carry it ("ver"),
    # and one carrying an older value is refused.
    token_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Collector(SQLModel, table=True):
    __tablename__ = "collector"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    token_hash: str = Field(max_length=64, unique=True)
    questionnaire_ids: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    created_by: uuid.UUID | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    actor: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    action: str = Field(max_length=64)
    target_type: str | None = Field(default=None, max_length=64)
    target_id: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))


class RateLimitBucket(SQLModel, table=True):
    """A fixed-window counter shared by every worker (login failures, public submissions)."""

    __tablename__ = "rate_limit_bucket"

    key: str = Field(sa_column=Column(String(200), primary_key=True))
    window_start: datetime = Field(sa_type=UTCDateTime, nullable=False)
    count: int = 0


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user with roles, or a collector bound to questionnaires."""

    kind: Literal["user", "collector"]
    id: uuid.UUID
    roles: frozenset[str] = frozenset()
    email: str | None = None
    questionnaire_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)
    # A user's token version when the principal was resolved (see User.token_version): a
    # statement that re-checks a remembered principal must compare it too.
    token_version: int | None = None

    @property
    def is_admin(self) -> bool:
        return Role.admin in self.roles

    def has_any(self, *roles: str) -> bool:
        return self.is_admin or bool(self.roles.intersection(roles))

    def actor(self) -> dict[str, Any]:
        return {"type": self.kind, "id": str(self.id), "email": self.email}


def _unique_roles(roles: list[Role]) -> list[Role]:
    if len(set(roles)) != len(roles):
        raise ValueError("roles must not repeat")
    return roles


Password = Annotated[
    str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
]
FullName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Roles = Annotated[list[Role], MinLen(1), AfterValidator(_unique_roles)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: Password
    full_name: FullName
    roles: Roles


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: FullName | None = None
    roles: Roles | None = None
    is_active: bool | None = None
    password: Password | None = None


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str
    roles: list[Role]
    is_active: bool
    created_at: datetime


class TokenRead(BaseModel):
    model_config = ConfigDict(json_schema_extra=examples(ex.TOKEN_READ))

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


class CollectorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FullName
    questionnaire_ids: Annotated[list[uuid.UUID], MinLen(1), MaxLen(200)]


class CollectorRead(BaseModel):
    id: uuid.UUID
    name: str
    questionnaire_ids: list[uuid.UUID]
    created_at: datetime
    revoked_at: datetime | None = None


class CollectorCreated(CollectorRead):
    token: str


class AuditRead(BaseModel):
    id: uuid.UUID
    at: datetime
    actor: dict[str, Any]
    action: str
    target_type: str | None
    target_id: str | None
    detail: dict[str, Any]
