"""Alembic environment: migrations run on the connection ``pneumo.service.history`` hands over."""

from alembic import context

from pneumo.service.history_schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
