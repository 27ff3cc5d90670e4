from sqlalchemy import Column, DateTime, MetaData, func
from sqlalchemy.dialects.postgresql import UUID

metadata = MetaData()


def tenant_key() -> list[Column]:
    """organization_id + id: the primary key of every tenant table."""
    return [
        Column("organization_id", UUID(as_uuid=True), primary_key=True),
        Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    ]


def timestamps() -> list[Column]:
    return [
        Column("created_at", DateTime(timezone=True), server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), server_default=func.now()),
    ]
