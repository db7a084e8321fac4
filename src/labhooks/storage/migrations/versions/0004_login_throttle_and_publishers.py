"""login throttle, who published an event and what

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 03:10:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("request_fingerprint", sa.String(length=64)))
        batch.add_column(sa.Column("published_by_token_id", sa.String(length=40)))
        batch.create_foreign_key(
            op.f("fk_events_published_by_token_id_api_tokens"),
            "api_tokens",
            ["published_by_token_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint(op.f("fk_events_published_by_token_id_api_tokens"))
        batch.drop_column("published_by_token_id")
        batch.drop_column("request_fingerprint")
    op.drop_table("login_throttle")
