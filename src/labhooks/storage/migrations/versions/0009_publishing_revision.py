"""publishing revision: a counter per organisation that every change to what publishing reads
(devices, channels, grants, subscriptions and their selections, people's roles) moves on, kept
by triggers so that no writer can forget it. A later migration that makes SQLite copy one of
these tables (batch mode's "move and copy") drops its triggers: it must create them again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 15:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table → the columns whose change of value matters to publishing (None: any insert, update or
# delete); an update of another column (a device's last_seen_at, a subscription's failing
# streak) does not move the revision, or publishing would reload what it caches after every
# event, and every time a target starts or stops failing
WATCHED: dict[str, tuple[str, ...] | None] = {
    "devices": ("name", "heartbeat_s", "organization_id"),
    "channels": (
        "key",
        "name",
        "unit",
        "trigger_events",
        "has_thresholds",
        "device_id",
        "organization_id",
    ),
    "channel_grants": None,
    "webhook_subscriptions": (
        "active",
        "deleted_at",
        "owner_id",
        "organization_id",
        "ordered",
        "updated_at",  # the worker's cue to decrypt its secrets and headers again
    ),
    "subscription_selections": None,
    "users": ("role", "organization_id"),
}
# how each table names its organisation, for OLD and NEW rows alike
ORGANIZATION_OF = {
    "subscription_selections": (
        "(SELECT organization_id FROM webhook_subscriptions WHERE id = {row}.subscription_id)"
    ),
}
BUMP = "UPDATE organizations SET publishing_revision = publishing_revision + 1 WHERE id = {org};"


def _organization(table: str, row: str) -> str:
    return ORGANIZATION_OF.get(table, "{row}.organization_id").format(row=row)


def _when_changed(table: str, postgresql: bool) -> str:
    """The WHEN clause under which an update of `table` moves the revision: a watched column's
    value changed (naming it in SET is not enough: writers set columns to what they were).
    PostgreSQL compares as text: its json type has no equality."""
    columns = WATCHED[table]
    if columns is None:
        return ""
    if postgresql:
        differs = [f"OLD.{c}::text IS DISTINCT FROM NEW.{c}::text" for c in columns]
        return f"WHEN ({' OR '.join(differs)}) "
    return f"WHEN {' OR '.join(f'OLD.{c} IS NOT NEW.{c}' for c in columns)} "


def _sqlite_triggers() -> list[str]:
    statements = []
    for table in WATCHED:
        old, new = _organization(table, "OLD"), _organization(table, "NEW")
        if table != "users":  # a new person has no grants and no subscriptions yet
            statements.append(
                f"CREATE TRIGGER trg_{table}_revision_insert AFTER INSERT ON {table} "
                f"BEGIN {BUMP.format(org=new)} END"
            )
        statements.append(
            f"CREATE TRIGGER trg_{table}_revision_update AFTER UPDATE ON {table} "
            f"{_when_changed(table, postgresql=False)}"
            f"BEGIN {BUMP.format(org=old)} {BUMP.format(org=new)} END"
        )
        statements.append(
            f"CREATE TRIGGER trg_{table}_revision_delete AFTER DELETE ON {table} "
            f"BEGIN {BUMP.format(org=old)} END"
        )
    return statements


def _postgresql_triggers() -> list[str]:
    statements = []
    for table in WATCHED:
        old, new = _organization(table, "OLD"), _organization(table, "NEW")
        function = f"labhooks_{table}_revision"
        statements.append(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF TG_OP <> 'INSERT' THEN {BUMP.format(org=old)} END IF; "
            f"IF TG_OP <> 'DELETE' THEN {BUMP.format(org=new)} END IF; "
            "RETURN NULL; END $$"
        )
        # a WHEN that reads OLD and NEW is for UPDATE alone: inserts and deletes have their own
        events = "DELETE" if table == "users" else "INSERT OR DELETE"
        statements.append(
            f"CREATE TRIGGER trg_{table}_revision AFTER {events} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
        statements.append(
            f"CREATE TRIGGER trg_{table}_revision_update AFTER UPDATE ON {table} "
            f"FOR EACH ROW {_when_changed(table, postgresql=True)}"
            f"EXECUTE FUNCTION {function}()"
        )
    return statements


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(
            sa.Column("publishing_revision", sa.Integer(), nullable=False, server_default="0")
        )
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in _postgresql_triggers() if postgresql else _sqlite_triggers():
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in WATCHED:
        if postgresql:
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_revision ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_revision_update ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS labhooks_{table}_revision()")
        else:
            for when in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_revision_{when}")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("publishing_revision")
