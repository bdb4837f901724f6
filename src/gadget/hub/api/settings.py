"""GET/PATCH /api/settings: the user's own settings (the permission mode of new sessions)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from gadget.hub.api.deps import QUERY_CHECK, HubDep, UserDep
from gadget.hub.api.schemas import MAX_BODY, SettingsOut, refusals
from gadget.protocol import PermissionMode

router = APIRouter(
    prefix="/api/settings", tags=["settings"], max_body_size=MAX_BODY, dependencies=QUERY_CHECK
)


class SettingsPatch(BaseModel):
    """Settings to change; a field left out keeps its value."""

    model_config = ConfigDict(extra="forbid")

    defaultPermissionMode: PermissionMode | None = None


@router.get("", response_model=SettingsOut, responses=refusals(401))
async def get_settings(user: UserDep, hub: HubDep) -> dict[str, Any]:
    """The user's settings: `defaultPermissionMode`, the mode new chat sessions start in."""
    return {"defaultPermissionMode": hub.control.controls.default_mode(user).value}


@router.patch("", response_model=SettingsOut, responses=refusals(401, body=True))
async def patch_settings(body: SettingsPatch, user: UserDep, hub: HubDep) -> dict[str, Any]:
    """Change the user's settings (existing chat sessions keep their mode); the result."""
    mode = body.defaultPermissionMode
    if mode is not None:
        await hub.store.set_default_permission_mode(user.id, mode)
        user.default_permission_mode = mode.value
    return {"defaultPermissionMode": hub.control.controls.default_mode(user).value}
