"""permission modes and models of chat sessions; approvals, changes, undo and usage of turns

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COUNTERS = ("prompt_tokens", "completion_tokens", "model_calls", "model_ms")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("default_permission_mode", sa.String(16), nullable=True))
    with op.batch_alter_table("chat_sessions") as batch:
        batch.add_column(
            sa.Column("permission_mode", sa.String(16), nullable=False, server_default="ask")
        )
        batch.add_column(sa.Column("model", sa.String(200), nullable=True))
    with op.batch_alter_table("chat_turns") as batch:
        batch.add_column(sa.Column("pending_approval", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pending_call_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("approvals", sa.Text(), nullable=True))
        batch.add_column(sa.Column("changes", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("reverted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        for name in _COUNTERS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("cost", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chat_turns") as batch:
        for name in ("cost", *reversed(_COUNTERS), "reverted", "changes", "approvals"):
            batch.drop_column(name)
        batch.drop_column("pending_call_id")
        batch.drop_column("pending_approval")
    with op.batch_alter_table("chat_sessions") as batch:
        batch.drop_column("model")
        batch.drop_column("permission_mode")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("default_permission_mode")
