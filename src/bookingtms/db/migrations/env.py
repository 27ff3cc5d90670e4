"""Alembic environment: runs as the owner role, one migration run at a time (advisory lock).

The lock is session-level, so the URL must reach the server directly, never through a
transaction-mode pooler: migrate.alembic_config() passes owner_url(), which is the direct URL."""

from alembic import context
from sqlalchemy import create_engine, pool, text

MIGRATION_LOCK = 7270010

url = context.config.get_main_option("sqlalchemy.url")
engine = create_engine(url, poolclass=pool.NullPool)

with engine.connect() as lock_conn:
    lock_conn = lock_conn.execution_options(isolation_level="AUTOCOMMIT")
    lock_conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=None)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
    finally:
        lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
