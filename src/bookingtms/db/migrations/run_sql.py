"""Runs a SQL file of this package through the migration's connection, as written (the raw
driver call, so `%` and `:` in PL/pgSQL bodies are not taken for parameters)."""

from pathlib import Path

from alembic import op

SQL_DIR = Path(__file__).parent / "sql"


def run_sql_file(name: str) -> None:
    op.get_bind().connection.driver_connection.execute((SQL_DIR / name).read_text())
