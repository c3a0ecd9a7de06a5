"""Settings: defaults, one clear line for a wrong value, secrets in production and development."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import SettingsError, load_settings
from tests.conftest import ROOT


def _kenes(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KENES_")}
    return subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KENES_MIN_CELL", "abc"),
        ("KENES_MIN_CELL", "0"),
        ("KENES_ENV", "staging"),
        ("KENES_DATABASE_URL", "mysql://root@localhost/kenes"),
        ("KENES_DB_POOL_SIZE", "-3"),
        ("KENES_MAX_BODY_BYTES", "ten"),
        ("KENES_BOOTSTRAP_ADMIN_EMAIL", "admin@kenes.local"),
        ("KENES_BOOTSTRAP_ADMIN_PASSWORD", "too short"),
    ],
)
def test_a_wrong_value_stops_start_up_with_one_line_naming_it(variable: str, value: str) -> None:
    result = _kenes({variable: value}, "migrate")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("secret", [None, "changeme", "short-but-not-placeholder"])
def test_production_refuses_missing_short_or_placeholder_secret(secret: str | None) -> None:
    with pytest.raises(SettingsError, match="KENES_SECRET_KEY"):
        load_settings(env="production", secret_key=secret)


def test_production_accepts_a_long_secret() -> None:
    settings = load_settings(env="production", secret_key="k" * 8 + "Zq3-9xT_" * 5)
    assert settings.signing_secret().startswith("kkkkkkkk")


def test_development_secret_is_generated_once_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KENES_SECRET_KEY", raising=False)
    first = load_settings(env="development").signing_secret()
    second = load_settings(env="development").signing_secret()
    assert first == second
    assert len(first) >= 32
    kept = tmp_path / "var" / "secret_key"
    assert kept.read_text() == first
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_defaults_and_auto_migrate_per_database(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KENES_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///var/kenes.db"
    assert settings.min_cell == 5
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.migrate_on_start is True
    on_postgres = load_settings(database_url="postgresql+asyncpg://postgres@127.0.0.1/x")
    assert on_postgres.migrate_on_start is False
    assert load_settings(database_url=on_postgres.database_url, auto_migrate=True).migrate_on_start


def test_cors_origins_accept_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KENES_CORS_ORIGINS", "https://a.example, https://b.example")
    assert load_settings().cors_origins == ["https://a.example", "https://b.example"]
