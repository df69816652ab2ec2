"""Policy names unique within a project, not across all projects.

Project beta could not name a policy as alpha had (a 409 that told beta so), nor enable
the per-server shortcut for a server named as one of alpha's. Now (project, name) is
unique, and so is the name among policies of no project (the CLI's, which a unique index
on (project, name) would not hold: NULLs differ). Every policy listed by (name, id).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_NO_PROJECT = sa.text("project IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        batch.drop_constraint("uq_policies_name", type_="unique")
    op.drop_index("ix_policies_project_name", table_name="policies")
    op.create_index("uq_policies_project_name", "policies", ["project", "name"], unique=True)
    op.create_index(
        "uq_policies_name_without_project",
        "policies",
        ["name"],
        unique=True,
        sqlite_where=_NO_PROJECT,
        postgresql_where=_NO_PROJECT,
    )
    op.create_index("ix_policies_name_page", "policies", ["name", "id"])


def downgrade() -> None:
    """Refused by the database while two projects have policies of the same name."""
    op.drop_index("ix_policies_name_page", table_name="policies")
    op.drop_index("uq_policies_name_without_project", table_name="policies")
    op.drop_index("uq_policies_project_name", table_name="policies")
    op.create_index("ix_policies_project_name", "policies", ["project", "name"])
    with op.batch_alter_table("policies") as batch:
        batch.create_unique_constraint("uq_policies_name", ["name"])
