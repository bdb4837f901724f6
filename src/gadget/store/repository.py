"""The one storage interface of the hub: every read and write of the database goes here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from gadget.protocol import (
    ApprovalRecord,
    BlockMode,
    BlockOut,
    PermissionMode,
    ToolCallOut,
    TurnOut,
    TurnStatus,
)
from gadget.store import approvals, batch
from gadget.store.database import make_engine, migrate
from gadget.store.tables import (
    ChatSession,
    ChatTurn,
    DroneRegistration,
    Project,
    ToolCall,
    TurnAgentEvent,
    TurnBlock,
    User,
    utcnow,
)


class Store:
    """Async repository over SQLAlchemy: users, projects, drones, sessions, turns, blocks."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._session = async_sessionmaker(engine, expire_on_commit=False)
        self._by_id: dict[type[Any], Select[Any]] = {}

    async def close(self) -> None:
        """Release every pooled connection."""
        await self.engine.dispose()

    def connect(self) -> AsyncConnection:
        """A pooled connection for reads that need no session (use as `async with`)."""
        return self.engine.connect()

    def session(self) -> AsyncSession:
        """A new unit of work (use as `async with store.session() as s`)."""
        return self._session()

    async def _add(self, row: Any) -> Any:
        async with self._session() as s:
            s.add(row)
            await s.commit()
            return row

    async def _get(self, table: type[Any], id_: str) -> Any:
        """The row `id_` of `table` as a detached instance, or None.

        A Core statement built once per table on a pooled connection: half the CPU of a
        session's `get` (no unit of work, identity map or statement to build), which
        every socket handshake, lock and prompt pays several times (docs/performance.md).
        """
        stmt = self._by_id.get(table)
        if stmt is None:
            stmt = self._by_id[table] = select(table.__table__).where(
                table.__table__.c.id == bindparam("id")
            )
        async with self.connect() as conn:
            row = (await conn.execute(stmt, {"id": id_})).first()
        return None if row is None else table(**row._mapping)

    async def _all(self, stmt: Any) -> list[Any]:
        async with self._session() as s:
            return list((await s.scalars(stmt)).all())

    async def _execute(self, stmt: Any) -> None:
        """One statement in its own transaction, on a connection: no session to keep in step
        (an ORM update would first evaluate its WHERE against the session's objects)."""
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    # -- users -----------------------------------------------------------------
    async def create_user(self, username: str, password_hash: str) -> User:
        """Insert a user."""
        row: User = await self._add(User(username=username, password_hash=password_hash))
        return row

    async def user_by_name(self, username: str) -> User | None:
        """The user called `username`, if any."""
        rows = await self._all(select(User).where(User.username == username))
        return rows[0] if rows else None

    async def get_user(self, user_id: str) -> User | None:
        """The user with this id, if any."""
        row: User | None = await self._get(User, user_id)
        return row

    async def count_users(self) -> int:
        """How many users exist."""
        async with self._session() as s:
            return int(await s.scalar(select(func.count()).select_from(User)) or 0)

    async def list_users(self) -> list[User]:
        """Every user, by name."""
        return await self._all(select(User).order_by(User.username))

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Replace a user's password hash."""
        await self._execute(
            update(User).where(User.id == user_id).values(password_hash=password_hash)
        )

    async def delete_user(self, user_id: str) -> None:
        """Delete a user; the database cascades to their projects, drones, sessions and turns."""
        await self._execute(delete(User).where(User.id == user_id))

    # -- projects --------------------------------------------------------------
    async def create_project(self, owner_id: str, name: str, description: str) -> Project:
        """Insert a project owned by `owner_id`."""
        row: Project = await self._add(
            Project(owner_id=owner_id, name=name, description=description)
        )
        return row

    async def list_projects(self, owner_id: str) -> list[Project]:
        """The owner's projects, oldest first."""
        stmt = select(Project).where(Project.owner_id == owner_id).order_by(Project.created_at)
        return await self._all(stmt)

    async def get_project(self, project_id: str) -> Project | None:
        """The project with this id, if any (callers check ownership)."""
        row: Project | None = await self._get(Project, project_id)
        return row

    # -- drones ----------------------------------------------------------------
    async def create_drone(
        self, owner_id: str, name: str, hostname: str, key_hash: str
    ) -> DroneRegistration:
        """Insert a drone registration."""
        row: DroneRegistration = await self._add(
            DroneRegistration(owner_id=owner_id, name=name, hostname=hostname, key_hash=key_hash)
        )
        return row

    async def list_drones(self, owner_id: str) -> list[DroneRegistration]:
        """The owner's drones, oldest first."""
        stmt = (
            select(DroneRegistration)
            .where(DroneRegistration.owner_id == owner_id)
            .order_by(DroneRegistration.created_at)
        )
        return await self._all(stmt)

    async def count_drones(self, owner_id: str) -> int:
        """How many drones `owner_id` has registered."""
        stmt = select(func.count()).select_from(DroneRegistration)
        async with self._session() as s:
            return int(await s.scalar(stmt.where(DroneRegistration.owner_id == owner_id)) or 0)

    async def get_drone(self, drone_id: str) -> DroneRegistration | None:
        """The drone registration with this id, if any (callers check ownership)."""
        row: DroneRegistration | None = await self._get(DroneRegistration, drone_id)
        return row

    async def delete_drone(self, drone_id: str) -> None:
        """Delete a drone registration; its chat sessions keep their turns."""
        async with self._session() as s:
            row = await s.get(DroneRegistration, drone_id)
            if row is not None:
                await s.delete(row)
                await s.commit()

    # -- chat sessions ---------------------------------------------------------
    async def create_chat_session(
        self, user_id: str, project_id: str, drone_id: str
    ) -> ChatSession:
        """Insert a chat session of `user_id` in `project_id` served by `drone_id`."""
        row: ChatSession = await self._add(
            ChatSession(user_id=user_id, project_id=project_id, drone_id=drone_id)
        )
        return row

    async def get_chat_session(self, chat_session_id: str) -> ChatSession | None:
        """The chat session with this id, if any (callers check ownership)."""
        row: ChatSession | None = await self._get(ChatSession, chat_session_id)
        return row

    async def set_session_drone(self, chat_session_id: str, drone_id: str) -> None:
        """Bind a chat session to the drone that now serves it."""
        await self._execute(
            update(ChatSession).where(ChatSession.id == chat_session_id).values(drone_id=drone_id)
        )

    async def list_chat_sessions(self, user_id: str, project_id: str | None) -> list[ChatSession]:
        """The user's chat sessions (optionally of one project), newest first."""
        stmt = select(ChatSession).where(ChatSession.user_id == user_id)
        if project_id is not None:
            stmt = stmt.where(ChatSession.project_id == project_id)
        return await self._all(stmt.order_by(ChatSession.created_at.desc()))

    async def set_permission_mode(self, chat_session_id: str, mode: PermissionMode) -> None:
        """Store a chat session's permission mode."""
        await self._execute(
            update(ChatSession)
            .where(ChatSession.id == chat_session_id)
            .values(permission_mode=mode.value)
        )

    async def set_model(self, chat_session_id: str, model: str | None) -> None:
        """Store the model a chat session's turns ask for (None: the drone's default)."""
        await self._execute(
            update(ChatSession).where(ChatSession.id == chat_session_id).values(model=model)
        )

    async def set_default_permission_mode(self, user_id: str, mode: PermissionMode) -> None:
        """The permission mode of the user's new chat sessions."""
        await self._execute(
            update(User).where(User.id == user_id).values(default_permission_mode=mode.value)
        )

    async def session_usage(self, chat_session_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each chat session's usage summed over its turns: tokens, model calls, cost."""
        t = ChatTurn
        stmt = (
            select(
                t.chat_session_id,
                func.coalesce(func.sum(t.prompt_tokens), 0),
                func.coalesce(func.sum(t.completion_tokens), 0),
                func.coalesce(func.sum(t.model_calls), 0),
                func.sum(t.cost),
            )
            .where(t.chat_session_id.in_(chat_session_ids))
            .group_by(t.chat_session_id)
        )
        async with self._session() as s:
            rows = (await s.execute(stmt)).all() if chat_session_ids else []
        out = {c: usage_json(0, 0, 0, None) for c in chat_session_ids}
        for chat, prompt, completion, calls, cost in rows:
            out[chat] = usage_json(int(prompt), int(completion), int(calls), cost)
        return out

    async def set_reverted(self, turn_id: str, reverted: bool) -> None:
        """Whether the turn's changes are undone now."""
        await self._execute(
            update(ChatTurn).where(ChatTurn.id == turn_id).values(reverted=reverted)
        )

    # -- turns -----------------------------------------------------------------
    async def get_turn(self, turn_id: str) -> ChatTurn | None:
        """The turn row (without blocks), if any."""
        row: ChatTurn | None = await self._get(ChatTurn, turn_id)
        return row

    async def turn_out(self, turn_id: str) -> TurnOut | None:
        """The whole turn as wire JSON, or None."""
        turns = await self._turns_out(select(ChatTurn).where(ChatTurn.id == turn_id))
        return turns[0] if turns else None

    async def session_turns(self, chat_session_id: str) -> list[TurnOut]:
        """Every turn of a chat session as wire JSON, oldest first."""
        stmt = (
            select(ChatTurn)
            .where(ChatTurn.chat_session_id == chat_session_id)
            .order_by(ChatTurn.created_at, ChatTurn.id)
        )
        return await self._turns_out(stmt)

    async def _turns_out(self, stmt: Any) -> list[TurnOut]:
        async with self._session() as s:
            turns = list((await s.scalars(stmt)).all())
            if not turns:
                return []
            ids = [t.id for t in turns]
            blocks = (
                await s.scalars(
                    select(TurnBlock).where(TurnBlock.turn_id.in_(ids)).order_by(TurnBlock.idx)
                )
            ).all()
            calls = (
                await s.scalars(
                    select(ToolCall).where(ToolCall.turn_id.in_(ids)).order_by(ToolCall.id)
                )
            ).all()
            live = [t.id for t in turns if t.status == TurnStatus.PROCESSING.value]
            agents = (
                (
                    await s.scalars(
                        select(TurnAgentEvent)
                        .where(TurnAgentEvent.turn_id.in_(live))
                        .order_by(TurnAgentEvent.id)
                    )
                ).all()
                if live
                else []
            )
        return [_turn_out(t, blocks, calls, agents) for t in turns]

    # -- transactions (the hub's writer runs every state change through these) --
    @property
    def lock_rows(self) -> bool:
        """Whether row locks (`FOR UPDATE`) mean anything here: PostgreSQL, not SQLite."""
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self._session() as s, s.begin():
            yield s

    async def write(self, writes: Sequence[batch.TurnWrite], node: str) -> dict[str, batch.Outcome]:
        """Apply the stream's writes of many turns in one transaction (see store/batch.py)."""
        async with self.transaction() as s:
            return await batch.apply_writes(s, writes, node, lock_rows=self.lock_rows)


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[Store]:
    """A Store on the database at `url`, migrated to the newest schema, closed at the end."""
    await migrate(url)
    store = Store(make_engine(url))
    try:
        yield store
    finally:
        await store.close()


async def touch_drone(session: AsyncSession, drone_id: str, hostname: str | None = None) -> None:
    """Record that the drone was seen now (and its hostname when it says one)."""
    values: dict[str, Any] = {"last_seen": utcnow()}
    if hostname:
        values["hostname"] = hostname
    await session.execute(
        update(DroneRegistration).where(DroneRegistration.id == drone_id).values(**values),
        execution_options={"synchronize_session": False},
    )


def fresh_turn_out(turn: ChatTurn) -> TurnOut:
    """A turn just created (no blocks, tool calls or agent events yet) as wire JSON."""
    return _turn_out(turn, [], [], [])


def _tool_out(call: ToolCall, answers: dict[str, dict[str, Any]]) -> ToolCallOut:
    answer = answers.get(call.call_id)
    return ToolCallOut(
        callId=call.call_id,
        name=call.name,
        parameters=call.parameters,
        response=call.response,
        subagent=json.loads(call.subagent) if call.subagent else None,
        approval=ApprovalRecord.model_validate(answer) if answer else None,
    )


def turn_stats(turn: ChatTurn, tool_calls: int, blocks: int) -> dict[str, Any]:
    """A stored turn's `stats`: its counts and, once its drone reported model calls, their
    usage (cost when priced)."""
    stats: dict[str, Any] = {"toolCallCount": tool_calls, "blockCount": blocks}
    if turn.model_calls:
        stats.update(
            promptTokens=turn.prompt_tokens,
            completionTokens=turn.completion_tokens,
            modelCalls=turn.model_calls,
            durationMs=turn.model_ms,
        )
    if turn.cost is not None:
        stats["cost"] = round(turn.cost, 6)
    return stats


def usage_json(prompt: int, completion: int, calls: int, cost: float | None) -> dict[str, Any]:
    """A chat session's `usage`: `{"promptTokens", "completionTokens", "modelCalls", "cost"?}`."""
    out: dict[str, Any] = {
        "promptTokens": prompt,
        "completionTokens": completion,
        "modelCalls": calls,
    }
    if cost is not None:
        out["cost"] = round(float(cost), 6)
    return out


def agent_streams(rows: Sequence[TurnAgentEvent]) -> dict[str, list[Any]]:
    """Running subagents' events by agentId, consecutive text deltas merged (as the hub keeps them)."""
    streams: dict[str, list[Any]] = {}
    for row in rows:
        stream = streams.setdefault(row.agent_id, [])
        merge_agent_event(stream, row.event, json.loads(row.payload))
    return streams


#: The text field of each subagent text event (merged across consecutive deltas).
AGENT_TEXT = {"agent:thinking": "thinking", "agent:response": "chunk"}


def merge_agent_event(stream: list[Any], event: str, data: dict[str, Any]) -> None:
    """Append `[event, data]` to a subagent's stream, merging a text delta into the last one."""
    key = AGENT_TEXT.get(event)
    last = stream[-1] if stream else None
    if key is not None and last is not None and last[0] == event and isinstance(data.get(key), str):
        last[1] = {**last[1], key: last[1][key] + data[key]}
    else:
        stream.append([event, data])


def _turn_out(
    turn: ChatTurn,
    blocks: Sequence[TurnBlock],
    calls: Sequence[ToolCall],
    agents: Sequence[TurnAgentEvent] = (),
) -> TurnOut:
    answers = approvals.decisions(turn.approvals)
    tools = {c.id: _tool_out(c, answers) for c in calls if c.turn_id == turn.id}
    out_blocks = []
    for b in blocks:
        if b.turn_id != turn.id:
            continue
        content: str | dict[str, Any] = b.content
        if b.tool_call_id is not None:
            content = tools[b.tool_call_id].tool_block_content()
        out_blocks.append(
            BlockOut(
                mode=BlockMode(b.mode), createdAt=b.created_at, content=content, attempt=b.attempt
            )
        )
    tool_list = list(tools.values())
    return TurnOut(
        id=turn.id,
        chatSession=turn.chat_session_id,
        user=turn.user_id,
        prompt=turn.prompt,
        status=TurnStatus(turn.status),
        errorMessage=turn.error_message,
        retries=turn.retries,
        cancelled=True if turn.cancelled else None,
        seq=turn.applied_seq,
        createdAt=turn.created_at,
        updatedAt=turn.updated_at,
        blocks=out_blocks,
        toolCalls=tool_list,
        stats=turn_stats(turn, len(tool_list), len(out_blocks)),
        agentStreams=agent_streams([a for a in agents if a.turn_id == turn.id]) or None,
        pendingApproval=json.loads(turn.pending_approval) if turn.pending_approval else None,
        changes=json.loads(turn.changes) if turn.changes is not None else None,
        reverted=True if turn.reverted else None,
        decisions=answers or None,
    )
