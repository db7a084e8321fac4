"""lab rules: channel thresholds, incidents, device liveness

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 06:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete=ondelete,
    )


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("heartbeat_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("liveness", sa.String(length=10), nullable=True))
    with op.batch_alter_table("channels") as batch:
        batch.add_column(
            sa.Column("has_thresholds", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "thresholds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("channel_id", sa.String(length=40), nullable=False),
        sa.Column("level", sa.String(length=20), nullable=False),
        sa.Column("comparator", sa.String(length=10), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("upper", sa.Float(), nullable=True),
        sa.Column("hysteresis", sa.Float(), nullable=False),
        sa.Column("hold_s", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        _fk("thresholds", "organization_id", "organizations", "CASCADE"),
        _fk("thresholds", "device_id", "devices", "CASCADE"),
        _fk("thresholds", "channel_id", "channels", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_thresholds")),
    )
    op.create_index(op.f("ix_thresholds_organization_id"), "thresholds", ["organization_id"])
    op.create_index(op.f("ix_thresholds_channel_id"), "thresholds", ["channel_id"])
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("threshold_id", sa.String(length=40), nullable=True),
        sa.Column("open_threshold_id", sa.String(length=40), nullable=True),
        sa.Column("device_id", sa.String(length=40), nullable=True),
        sa.Column("channel_id", sa.String(length=40), nullable=True),
        sa.Column("level", sa.String(length=20), nullable=False),
        sa.Column("comparator", sa.String(length=10), nullable=False),
        sa.Column("threshold_value", sa.Float(), nullable=False),
        sa.Column("upper", sa.Float(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_value", sa.Float(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_value", sa.Float(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=40), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledgement_note", sa.Text(), nullable=True),
        _fk("incidents", "organization_id", "organizations", "CASCADE"),
        _fk("incidents", "threshold_id", "thresholds", "SET NULL"),
        _fk("incidents", "device_id", "devices", "SET NULL"),
        _fk("incidents", "channel_id", "channels", "SET NULL"),
        _fk("incidents", "acknowledged_by", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("open_threshold_id", name=op.f("uq_incidents_open_threshold_id")),
    )
    op.create_index(op.f("ix_incidents_organization_id"), "incidents", ["organization_id"])
    op.create_index(op.f("ix_incidents_threshold_id"), "incidents", ["threshold_id"])


def downgrade() -> None:
    op.drop_table("incidents")
    op.drop_table("thresholds")
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("has_thresholds")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("liveness")
        batch.drop_column("last_seen_at")
        batch.drop_column("heartbeat_s")
