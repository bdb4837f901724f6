"""drone leases, the applied stream seq of a turn, durable subagent events

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_turns") as batch:
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("applied_seq", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "turn_agent_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("turn_id", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=200), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["turn_id"], ["chat_turns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_turn_agent_events_turn", "turn_agent_events", ["turn_id", "id"])
    op.create_table(
        "drone_leases",
        sa.Column("drone_id", sa.String(length=32), nullable=False),
        sa.Column("chat_session_id", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("current_turn_id", sa.String(length=32), nullable=True),
        sa.Column("owner_node", sa.String(length=64), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("drone_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("drone_deadline_reason", sa.String(length=32), nullable=True),
        sa.Column("ide_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["drone_id"], ["drones.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["chat_session_id"], ["chat_sessions.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("drone_id"),
    )
    op.create_index("ix_drone_leases_owner", "drone_leases", ["owner_node"])
    op.create_index("ix_drone_leases_session", "drone_leases", ["chat_session_id"])


def downgrade() -> None:
    op.drop_table("drone_leases")
    op.drop_table("turn_agent_events")
    with op.batch_alter_table("chat_turns") as batch:
        batch.drop_column("applied_seq")
        batch.drop_column("cancel_requested")
