"""Settings: the well-known variable names, blank-means-unset, and validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import Settings, default_data_dir

_KNOWN = ("DATABASE_URL", "DISCORD_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "STRIPE_SECRET_KEY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the variables it sets, whatever the developer's or CI's shell exports."""
    for name in os.environ:
        if name.startswith(("TRADEDESK_", "STRIPE_")) or name in _KNOWN:
            monkeypatch.delenv(name)


def test_well_known_names_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.example:5432/app")
    monkeypatch.setenv("TRADEDESK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DISCORD_TOKEN", "tok")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1")
    monkeypatch.setenv("TRADEDESK_MARKET_PROVIDER", "binance")
    monkeypatch.setenv("TRADEDESK_WEB_PORT", "9090")
    settings = Settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://u:p@db.example:5432/app"
    assert settings.data_dir == tmp_path and settings.pg_data_dir == tmp_path / "pg"
    assert settings.discord_token is not None and settings.openai_base_url == "http://127.0.0.1:9999/v1"
    assert settings.market_provider == "binance" and settings.web_port == 9090
    assert not settings.embedded_db


def test_defaults_are_the_local_ones() -> None:
    settings = Settings()
    assert settings.embedded_db and settings.discord_token is None and settings.openai_api_key is None
    assert settings.market_provider == "sim"
    assert (settings.web_host, settings.web_port, settings.public_url) == ("127.0.0.1", 8080, "http://127.0.0.1:8080")
    assert settings.data_dir == default_data_dir()


def test_a_blank_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "  ")
    monkeypatch.setenv("DISCORD_TOKEN", "")
    settings = Settings()
    assert settings.database_url is None and settings.discord_token is None


def test_secrets_never_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@h/db")
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_hunter3")
    text = repr(Settings()) + str(Settings())
    assert "hunter2" not in text and "hunter3" not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [("TRADEDESK_WEB_PORT", "abc"), ("TRADEDESK_WEB_PORT", "70000"), ("TRADEDESK_MARKET_PROVIDER", "nyse")],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_root_default_data_dir_is_outside_roots_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_data_dir() == Path("/var/lib/tradedesk")
