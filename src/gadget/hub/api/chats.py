"""GET /api/chat-sessions, /api/chat-sessions/{id}/turns, /api/turns/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gadget.hub.api.deps import QUERY_CHECK, HubDep, UserDep
from gadget.hub.api.schemas import MAX_BODY, ChatSessionOut, PathId, QueryId, refusals
from gadget.hub.exceptions import NotFound
from gadget.hub.views import chat_session_json
from gadget.protocol import TurnOut

router = APIRouter(prefix="/api", tags=["chat"], max_body_size=MAX_BODY, dependencies=QUERY_CHECK)


@router.get("/chat-sessions", response_model=list[ChatSessionOut], responses=refusals(401))
async def list_chat_sessions(
    user: UserDep, hub: HubDep, project: QueryId = None
) -> list[dict[str, Any]]:
    """The user's chat sessions (of one project when `?project=ID`), newest first, each with
    its model usage summed over its turns."""
    chats = await hub.store.list_chat_sessions(user.id, project)
    usage = await hub.store.session_usage([c.id for c in chats])
    return [{**chat_session_json(c), "usage": usage[c.id]} for c in chats]


@router.get(
    "/chat-sessions/{chat_session_id}/turns",
    response_model=list[TurnOut],
    response_model_exclude_none=True,
    responses=refusals(401, 404),
)
async def list_turns(chat_session_id: PathId, user: UserDep, hub: HubDep) -> list[dict[str, Any]]:
    """Every turn of a chat session, oldest first (a live turn includes unwritten text)."""
    chat = await hub.store.get_chat_session(chat_session_id)
    if chat is None or chat.user_id != user.id:
        raise NotFound(f"unknown chat session {chat_session_id}")
    # Live turns are read before the stored ones and again after: a turn whose end is
    # committed while the rows are read is no longer live after, and its row may be older.
    before = hub.drones.live_of(chat_session_id)
    turns = await hub.store.session_turns(chat_session_id)
    out = []
    for turn in turns:
        live = hub.drones.live(turn.id)
        earlier = before.get(turn.id)
        if live is not None:
            turn = live.snapshot()
        elif earlier is not None and earlier.seq >= turn.seq:
            turn = earlier
        out.append(turn.wire())
    return out


@router.get(
    "/turns/{turn_id}",
    response_model=TurnOut,
    response_model_exclude_none=True,
    responses=refusals(401, 404),
)
async def get_turn(turn_id: PathId, user: UserDep, hub: HubDep) -> dict[str, Any]:
    """One turn (live when it is being recorded)."""
    turn = await hub.turns.turn_json(turn_id)
    if turn is None or turn["user"] != user.id:
        raise NotFound(f"unknown turn {turn_id}")
    return turn
