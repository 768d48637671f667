"""The SQLModel classes and the migrated schema agree: same tables, columns, types, nullability and keys."""

from __future__ import annotations

import asyncpg
from sqlalchemy.dialects import postgresql

from core.models import metadata
from tests.core.db import catalog

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_SPELLING = {"timestampwithtimezone": "timestamptz", "timewithouttimezone": "time"}


def _norm(type_name: str) -> str:
    name = type_name.lower().replace(" ", "")
    return _SPELLING.get(name, name)


async def _schema(conn: asyncpg.Connection) -> dict[str, dict[str, tuple[str, bool]]]:
    rows = await conn.fetch(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'tradedesk' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped "
        "AND c.relname <> 'schema_migrations'"
    )
    schema: dict[str, dict[str, tuple[str, bool]]] = {}
    for r in rows:
        schema.setdefault(r["relname"], {})[r["attname"]] = (_norm(r["type"]), r["nullable"])
    return schema


def _models() -> dict[str, dict[str, tuple[str, bool]]]:
    return {
        table.name: {col.name: (_norm(col.type.compile(dialect=_DIALECT)), bool(col.nullable)) for col in table.columns}
        for table in metadata.sorted_tables
    }


async def test_models_and_schema_have_the_same_tables_columns_types_and_nullability(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        schema = await _schema(conn)
        models = _models()
        assert sorted(models) == sorted(schema)
        for table, columns in schema.items():
            assert models[table] == columns, table
            model_pk = [c.name for c in metadata.tables[table].primary_key.columns]
            assert sorted(model_pk) == sorted(await catalog.primary_key(conn, table)), table
    finally:
        await conn.close()


def test_money_and_quantities_are_decimal_and_snowflakes_bigint() -> None:
    models = _models()
    for table, columns in models.items():
        for name, (type_name, _) in columns.items():
            assert "float" not in type_name and "double" not in type_name and "real" not in type_name, (table, name)
            if name.endswith("discord_id") or name.endswith("channel_id") or name.endswith("message_id"):
                assert type_name == "bigint", (table, name)
            if name.endswith("_at") or name in {"ts", "minute", "created"}:
                assert type_name == "timestamptz", (table, name)
    assert models["orders"]["qty"][0] == "numeric(28,10)"
    assert models["cash_ledger"]["amount"][0] == "numeric(28,4)"
