"""One settings class, read from the environment (prefix KENES_)."""

import math
import secrets
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import EmailStr, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/kenes.db"
DEV_SECRET_FILE = Path("var/secret_key")
MIN_SECRET_LENGTH = 32
# Values people paste from examples; refused outside development.
PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "secret-key", "your-secret-key", "dev"}
# Estimated bits in a production secret (Shannon entropy of its characters times its length):
# 32 random hex digits give about 118, "a" * 32 gives 0, "abcd" * 8 gives 64.
MIN_SECRET_BITS = 100
MIN_RSA_BITS = 2048
# In production a cell smaller than this would single people out in published aggregates.
MIN_PRODUCTION_CELL = 3


class SettingsError(Exception):
    """A setting has a wrong value; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KENES_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    env: Literal["development", "production"] = "development"
    secret_key: SecretStr | None = None
    min_cell: int = Field(default=5, ge=1, le=1000)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Batches of up to 1000 responses to forms of hundreds of questions run to megabytes; they
    # are decoded in worker threads. Callers without a token stay at max_body_bytes.
    max_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    cors_origins: Annotated[list[str], NoDecode] = []
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    auto_migrate: bool | None = None
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # Whether /docs, /redoc and /openapi.json, and /metrics, are served (404 when not).
    expose_docs: bool = True
    expose_metrics: bool = True
    # Slow clients (app/server.py): seconds for a request's headers, for its body, and
    # between requests on a kept-alive connection; open connections per process.
    http_header_timeout_seconds: float = Field(default=10, gt=0, le=300)
    http_body_timeout_seconds: float = Field(default=60, gt=0, le=3600)
    http_keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    max_connections: int = Field(default=1000, ge=1, le=100_000)
    # Exports at once per process, each on a connection of a pool of their own.
    export_concurrency: int = Field(default=2, ge=1, le=50)
    # An export whose client reads nothing for this long is ended (its connection freed).
    export_idle_seconds: float = Field(default=60, gt=0, le=3600)

    token_ttl: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    jwt_private_key: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str = "kenes"
    jwt_audience: str = "kenes-api"
    bootstrap_admin_email: EmailStr | None = None
    bootstrap_admin_password: SecretStr | None = None
    # Failed logins per (account, address) before each further try waits, twice as long
    # each time from login_backoff_seconds up to the window; other addresses are unaffected.
    login_max_failures: int = Field(default=5, ge=1)
    login_backoff_seconds: int = Field(default=30, ge=1)
    # Password checks (each an argon2 hash) per client address (IPv6: per /64) and window.
    login_max_failures_per_address: int = Field(default=30, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    # Password hashes computed at once by one process: the rest wait, off the event loop.
    password_hash_concurrency: int = Field(default=2, ge=1, le=64)
    # OpenRosa submissions (app/routers/openrosa.py): a whole POST, instance and attachments
    # (clients read it from X-OpenRosa-Accept-Content-Length and split bigger ones), and the
    # instance XML alone.
    openrosa_max_submission_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    openrosa_max_xml_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Attachments of responses (app/services/attachments.py): each file at most this many bytes
    # (PUT, multipart and OpenRosa alike). A multipart submission by a caller with a token may
    # carry the response and up to max_submission_files of them.
    max_attachment_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    max_submission_files: int = Field(default=10, ge=1, le=100)
    # Form media (app/services/form_media.py): the images, audio and video an imported XLSForm
    # shows, each at most form_media_max_file_bytes, together at most form_media_max_bytes
    # (the import's body may then be max_upload_bytes plus that), at most form_media_max_files.
    form_media_max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    form_media_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    form_media_max_files: int = Field(default=100, ge=1, le=1000)
    # A multipart submission without a token (public questionnaires), files included: they
    # may not PUT files later, and the per-address rate limit bounds how often they send.
    max_public_submission_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    public_submit_limit: int = Field(default=60, ge=1)
    public_submit_window_seconds: int = Field(default=60, ge=1)
    # Published aggregates (GET /public/aggregates/{id}) per client address (IPv6: per /64).
    public_aggregates_limit: int = Field(default=30, ge=1)
    public_aggregates_window_seconds: int = Field(default=60, ge=1)

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("bootstrap_admin_password")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 12:
            raise ValueError("must be at least 12 characters")
        return value

    @model_validator(mode="after")
    def _check_key_pair(self) -> "Settings":
        if (self.jwt_private_key is None) != (self.jwt_public_key is None):
            raise ValueError("KENES_JWT_PRIVATE_KEY and KENES_JWT_PUBLIC_KEY must be set together")
        if self.jwt_private_key is not None and self.jwt_public_key is not None:
            problem = rsa_key_pair_problem(
                self.jwt_private_key.get_secret_value(), self.jwt_public_key
            )
            if problem:
                raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _check_production(self) -> "Settings":
        if self.env != "production":
            return self
        if self.min_cell < MIN_PRODUCTION_CELL:
            raise ValueError(
                f"KENES_MIN_CELL must be at least {MIN_PRODUCTION_CELL} in production "
                "(smaller cells single people out)"
            )
        if "*" in self.cors_origins:
            raise ValueError("KENES_CORS_ORIGINS may not be * in production; list the origins")
        return self

    @model_validator(mode="after")
    def _check_secret(self) -> "Settings":
        if self.env != "production":
            return self
        if self.secret_key is None:
            raise ValueError("KENES_SECRET_KEY is required when KENES_ENV=production")
        value = self.secret_key.get_secret_value()
        if (
            len(value) < MIN_SECRET_LENGTH
            or value.lower() in PLACEHOLDER_SECRETS
            or estimated_bits(value) < MIN_SECRET_BITS
        ):
            raise ValueError(
                f"KENES_SECRET_KEY must be at least {MIN_SECRET_LENGTH} random characters "
                "in production (e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    @property
    def jwt_algorithm(self) -> str:
        return "RS256" if self.jwt_private_key is not None else "HS256"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def migrate_on_start(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    def signing_secret(self) -> str:
        """The configured secret, or in development one generated once and kept under var/."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        if DEV_SECRET_FILE.exists():
            return DEV_SECRET_FILE.read_text().strip()
        DEV_SECRET_FILE.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        DEV_SECRET_FILE.touch(mode=0o600)
        DEV_SECRET_FILE.write_text(value)
        return value


def estimated_bits(value: str) -> float:
    """A rough estimate of the randomness in a secret: its characters' Shannon entropy times
    its length. It cannot prove a secret random, but catches repeated and patterned ones."""
    counts = Counter(value)
    total = len(value)
    per_character = -sum(n / total * math.log2(n / total) for n in counts.values())
    return per_character * total


def rsa_key_pair_problem(private_pem: str, public_pem: str) -> str | None:
    """Why the RS256 key pair cannot serve (unreadable, too short, or not one pair), or None.

    A mismatched pair made every token 401 while /readyz said 200.
    """
    try:
        private_key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        public_key = serialization.load_pem_public_key(public_pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return "KENES_JWT_PRIVATE_KEY and KENES_JWT_PUBLIC_KEY must be PEM RSA keys"
    if not isinstance(private_key, rsa.RSAPrivateKey) or not isinstance(
        public_key, rsa.RSAPublicKey
    ):
        return "KENES_JWT_PRIVATE_KEY and KENES_JWT_PUBLIC_KEY must be RSA keys"
    if private_key.key_size < MIN_RSA_BITS:
        return f"KENES_JWT_PRIVATE_KEY must be an RSA key of at least {MIN_RSA_BITS} bits"
    if private_key.public_key().public_numbers() != public_key.public_numbers():
        return "KENES_JWT_PUBLIC_KEY is not the public half of KENES_JWT_PRIVATE_KEY"
    return None


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a wrong value becomes one SettingsError line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        # Errors of the whole model (the secret rule) already name their variable.
        line = f"KENES_{field.upper()}: {message}" if field else message
        raise SettingsError(line) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()
