"""The relational schema (portable SQL: SQLite and PostgreSQL through the same code).

A turn is never stored as one document: its blocks and tool calls are rows, so
appending to a turn is one INSERT (or one `content || delta` UPDATE of the
growing block), whatever the turn's length.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from sqlalchemy import (
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def new_id() -> str:
    """A new opaque string identifier."""
    return uuid4().hex


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC when read (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


Id = String(32)
Stamp = UTCDateTime()


class User(Base):
    """A person who drives drones."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(Id, primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Stamp, default=utcnow)
    #: The permission mode of the user's new chat sessions (None: the hub's default).
    default_permission_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)


class Project(Base):
    """A project owned by a user; chat sessions belong to one."""

    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(Id, primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Stamp, default=utcnow)


class DroneRegistration(Base):
    """A drone allowed to connect: its key is stored hashed."""

    __tablename__ = "drones"
    id: Mapped[str] = mapped_column(Id, primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    hostname: Mapped[str] = mapped_column(String(255), default="")
    key_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Stamp, default=utcnow)
    last_seen: Mapped[datetime | None] = mapped_column(Stamp, nullable=True)


class ChatSession(Base):
    """A conversation of one user, in one project, served by one drone."""

    __tablename__ = "chat_sessions"
    id: Mapped[str] = mapped_column(Id, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    drone_id: Mapped[str | None] = mapped_column(
        ForeignKey("drones.id", ondelete="SET NULL"), nullable=True
    )
    title: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(Stamp, default=utcnow)
    #: Which tool calls run unasked (protocol.PermissionMode).
    permission_mode: Mapped[str] = mapped_column(String(16), default="ask")
    #: The model its turns ask for (None: the drone's default).
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (Index("ix_chat_sessions_project", "project_id", "created_at"),)


class ChatTurn(Base):
    """One prompt and everything the agent streamed for it."""

    __tablename__ = "chat_turns"
    id: Mapped[str] = mapped_column(Id, primary_key=True, default=new_id)
    chat_session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    prompt: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    #: Ended by a cancel (status is then error, with the message "cancelled").
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: An IDE asked to cancel it: however it ends, it ends as cancelled.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The last stream event (its seq) whose rows are stored: written in the same
    #: transaction as those rows, so the stored turn is exactly the stream up to it.
    applied_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Stamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Stamp, default=utcnow)
    #: The tool call waiting for the person (protocol.PendingApproval as JSON), and its
    #: callId apart, so that the first answer wins by a conditional UPDATE.
    pending_approval: Mapped[str | None] = mapped_column(Text, nullable=True)
    pending_call_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: Every answer of the turn: JSON {callId: {decision, by, at, name, parameters}}.
    approvals: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The files the turn changed (a JSON list of protocol.FileChange), from its drone.
    changes: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Its changes are undone now (revertTurn).
    reverted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Sums over the turn's model calls (usage events); cost only when prices are set.
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    model_calls: Mapped[int] = mapped_column(Integer, default=0)
    model_ms: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_chat_turns_session", "chat_session_id", "created_at"),)


class ToolCall(Base):
    """A tool the agent ran; its block in the turn points here."""

    __tablename__ = "tool_calls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[str] = mapped_column(ForeignKey("chat_turns.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    parameters: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    subagent: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_tool_calls_turn", "turn_id", "call_id"),)


class TurnBlock(Base):
    """One block of a turn: thinking or responding text, or a pointer to a tool call."""

    __tablename__ = "turn_blocks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[str] = mapped_column(ForeignKey("chat_turns.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    mode: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Stamp, default=utcnow)
    content: Mapped[str] = mapped_column(Text, default="")
    tool_call_id: Mapped[int | None] = mapped_column(
        ForeignKey("tool_calls.id", ondelete="CASCADE"), nullable=True
    )

    __table_args__ = (UniqueConstraint("turn_id", "idx", name="uq_turn_blocks_turn_idx"),)


class TurnAgentEvent(Base):
    """One `agent:*` event of a subagent still running (kept until its `agent:complete`)."""

    __tablename__ = "turn_agent_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[str] = mapped_column(ForeignKey("chat_turns.id", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_turn_agent_events_turn", "turn_id", "id"),)


class DroneLease(Base):
    """Who holds a drone: its lock, its current turn, the node serving it, and its deadlines.

    Changed only by conditional UPDATEs (hub/state/leases.py). `epoch` goes up each time
    the drone's socket is taken by a node; a node writes a turn's stream only while the
    lease still names it at the epoch it took (writes are fenced).
    """

    __tablename__ = "drone_leases"
    drone_id: Mapped[str] = mapped_column(
        ForeignKey("drones.id", ondelete="CASCADE"), primary_key=True
    )
    chat_session_id: Mapped[str | None] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="SET NULL"), nullable=True
    )
    user_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    current_turn_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    owner_node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    #: The drone is away with a turn: at this time the turn ends (grace, or unclaimed).
    drone_deadline: Mapped[datetime | None] = mapped_column(Stamp, nullable=True)
    #: Why drone_deadline was set ("grace" or "unclaimed"), for the turn's error message.
    drone_deadline_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: Every IDE of the lock is away: at this time the lock is released (never mid-turn).
    ide_deadline: Mapped[datetime | None] = mapped_column(Stamp, nullable=True)
    #: Crash recovery said retry: at this time the work order is sent again.
    retry_at: Mapped[datetime | None] = mapped_column(Stamp, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(Stamp, default=utcnow)

    __table_args__ = (
        Index("ix_drone_leases_owner", "owner_node"),
        Index("ix_drone_leases_session", "chat_session_id"),
    )
