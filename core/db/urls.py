"""Database URLs: validate DATABASE_URL once, and never print a password."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

from core.errors import SetupError

_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}


def normalize_database_url(url: str) -> str:
    """Return the URL in the `postgresql://` form that psql and asyncpg both accept, or raise SetupError."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- parsing the port is what validates it
    except ValueError as exc:
        raise SetupError(
            f"DATABASE_URL is malformed ({exc}); expected postgresql://user:password@host:5432/dbname"
        ) from None
    if parts.scheme not in _SCHEMES:
        raise SetupError(
            f"DATABASE_URL must start with postgresql:// (got {parts.scheme or 'no scheme'}://); "
            "expected postgresql://user:password@host:5432/dbname"
        )
    has_socket = "host" in parse_qs(parts.query)
    if not parts.hostname and not has_socket:
        raise SetupError("DATABASE_URL has no host; expected postgresql://user:password@host:5432/dbname")
    if not parts.path.strip("/"):
        raise SetupError("DATABASE_URL names no database; expected postgresql://user:password@host:5432/dbname")
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


def redact(url: str) -> str:
    """The URL with its password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def database_name(url: str) -> str:
    return urlsplit(url).path.strip("/")
