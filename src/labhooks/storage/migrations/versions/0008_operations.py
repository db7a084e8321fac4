"""operations: audit log, worker heartbeats, token expiry and device, organisation events,
events by age

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 07:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("device_id", sa.String(length=40), nullable=True))
        batch.create_foreign_key(
            op.f("fk_api_tokens_device_id_devices"),
            "devices",
            ["device_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("organization_events", sa.JSON(), nullable=True))
    op.create_index("ix_events_created_at", "events", ["created_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=True),
        sa.Column("actor_user_id", sa.String(length=40), nullable=True),
        sa.Column("actor", sa.String(length=400), nullable=False),
        sa.Column("token_id", sa.String(length=40), nullable=True),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target_type", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.String(length=40), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_audit_log_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["actor_user_id"],
            ["users.id"],
            name=op.f("fk_audit_log_actor_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_organization", "audit_log", ["organization_id", "id"])
    op.create_table(
        "worker_heartbeats",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
    op.drop_index("ix_audit_log_organization", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_events_created_at", table_name="events")
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("organization_events")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint(op.f("fk_api_tokens_device_id_devices"), type_="foreignkey")
        batch.drop_column("device_id")
        batch.drop_column("expires_at")
