"""signature schemes: ed25519 (Standard Webhooks v1a) beside hmac, with public keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 09:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(
            sa.Column(
                "signature_scheme", sa.String(length=16), nullable=False, server_default="hmac"
            )
        )
        batch.add_column(sa.Column("public_key", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("previous_public_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # ed25519 subscriptions keep their whsk_ key, which older code would sign with as if it were
    # an HMAC secret: rotate their secrets after downgrading
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("previous_public_key")
        batch.drop_column("public_key")
        batch.drop_column("signature_scheme")
