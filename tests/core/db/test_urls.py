"""DATABASE_URL validation: a clear SetupError for anything unusable, and passwords never echoed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.db.urls import normalize_database_url, redact
from core.errors import SetupError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql://u:p@h:5432/db"),
        ("postgresql+asyncpg://u@h/db?sslmode=require", "postgresql://u@h/db?sslmode=require"),
        ("postgresql://u@/db?host=/run/pg", "postgresql://u@/db?host=/run/pg"),
    ],
)
def test_usable_urls_are_normalized_for_psql_and_asyncpg(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "must start with postgresql://"),
        ("mysql://u@h/db", "must start with postgresql:// (got mysql://)"),
        ("postgresql://u@h:notaport/db", "malformed"),
        ("postgresql://u@h:99999/db", "malformed"),
        ("postgresql://u@h/", "names no database"),
        ("postgresql:///db", "has no host"),
    ],
)
def test_unusable_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(SetupError, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalize_database_url(url)


@given(st.text(max_size=200))
def test_any_string_gives_a_url_or_a_setup_error(url: str) -> None:
    try:
        normalized = normalize_database_url(url)
    except SetupError as exc:
        assert "\n" not in str(exc)
    else:
        assert normalized.startswith("postgresql://")


def test_redact_hides_the_password() -> None:
    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"


def test_errors_do_not_echo_the_password() -> None:
    with pytest.raises(SetupError) as info:
        normalize_database_url("postgresql://u:s3cret@h/")
    assert "s3cret" not in str(info.value)
