"""Alembic environment: run migrations on the connection stackback hands over."""

from __future__ import annotations

from alembic import context

from stackback.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - stackback always passes a connection
    raise RuntimeError("stackback migrations run through `stackback db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
