"""JWTs (python-jose), password hashing (argon2), collector tokens: the only code touching them."""

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from jose import JWTError, jwt

from app.config import Settings
from app.models.auth import COLLECTOR_TOKEN_PREFIX

# Decoding never trusts the token's own "alg": only these, and of these only the configured one.
ALLOWED_ALGORITHMS = frozenset({"HS256", "RS256"})
_REQUIRED_CLAIMS = ("sub", "iat", "exp", "iss", "aud", "jti")

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class TokenError(Exception):
    """The token is not one we issued, or no longer valid."""


class TokenService:
    def __init__(self, settings: Settings) -> None:
        self.algorithm = settings.jwt_algorithm
        if self.algorithm not in ALLOWED_ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {self.algorithm}")
        if settings.jwt_private_key is not None and settings.jwt_public_key is not None:
            self._signing_key = settings.jwt_private_key.get_secret_value()
            self._verifying_key = settings.jwt_public_key
        else:
            self._signing_key = self._verifying_key = settings.signing_secret()
        self.ttl = settings.token_ttl
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience

    def issue(self, subject: uuid.UUID, version: int = 0) -> str:
        """A token for user `subject` at token version `version` (see User.token_version)."""
        now = datetime.now(UTC)
        claims = {
            "sub": str(subject),
            "ver": version,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self.ttl)).timestamp()),
            "iss": self.issuer,
            "aud": self.audience,
            "jti": uuid.uuid4().hex,
        }
        token: str = jwt.encode(claims, self._signing_key, algorithm=self.algorithm)
        return token

    def verify(self, token: str) -> tuple[uuid.UUID, int, int]:
        """(user id, expiry as a Unix time, token version) of a valid token; TokenError for
        anything else. A token without a version (issued before versions) is version 0."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != self.algorithm:
                raise TokenError("unexpected algorithm")
            claims: dict[str, Any] = jwt.decode(
                token,
                self._verifying_key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={f"require_{claim}": True for claim in _REQUIRED_CLAIMS},
            )
            version = claims.get("ver", 0)
            if type(version) is not int:
                raise TokenError("bad token version")
            return uuid.UUID(str(claims["sub"])), int(claims["exp"]), version
        except (JWTError, ValueError, KeyError, TypeError) as error:
            raise TokenError(str(error)) from error


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists (pass None for an unknown user)."""
    try:
        ok = _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and password_hash is not None


def new_collector_token() -> tuple[str, str]:
    """A fresh collector token and the hash to store (the token itself is shown once)."""
    token = COLLECTOR_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    # High-entropy random tokens need no slow hash; SHA-256 lets us look them up by hash.
    return hashlib.sha256(token.encode()).hexdigest()


def is_collector_token(token: str) -> bool:
    return token.startswith(COLLECTOR_TOKEN_PREFIX)
