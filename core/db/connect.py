"""Opening a direct connection, with failures turned into one line that says what to do."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from core.db.urls import database_name
from core.errors import SetupError

CONNECT_TIMEOUT_S = 10.0


def _where(url: str) -> str:
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host")
    if socket_dir:
        return socket_dir[0]
    return f"{parts.hostname}:{parts.port or 5432}"


async def connect(url: str, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg.connect, raising SetupError (no traceback wall) when the database can't be reached or refuses us."""
    where, name = _where(url), database_name(url)
    try:
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S, **kwargs)
    except asyncpg.InvalidCatalogNameError:
        raise SetupError(f"database {name!r} does not exist at {where}; create it or fix DATABASE_URL") from None
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        raise SetupError(
            f"the database at {where} refused the login ({exc}); check the user and password in DATABASE_URL"
        ) from None
    except socket.gaierror:
        raise SetupError(f"can't resolve the database host in {where}; check DATABASE_URL") from None
    except (OSError, TimeoutError) as exc:
        reason = exc.strerror or type(exc).__name__
        raise SetupError(
            f"can't reach the database at {where} ({reason}); check DATABASE_URL and that Postgres is running"
        ) from None
    except asyncpg.PostgresError as exc:
        raise SetupError(f"the database at {where} refused the connection: {exc}") from None
