"""GET/POST /api/projects."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, status
from pydantic import BaseModel, StringConstraints

from gadget.hub.api.deps import QUERY_CHECK, HubDep, UserDep
from gadget.hub.api.schemas import MAX_BODY, ProjectOut, refusals
from gadget.hub.views import project_json

router = APIRouter(
    prefix="/api/projects", tags=["projects"], max_body_size=MAX_BODY, dependencies=QUERY_CHECK
)


class NewProject(BaseModel):
    """A project to create."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    description: Annotated[str, StringConstraints(max_length=10_000)] = ""


@router.get("", response_model=list[ProjectOut], responses=refusals(401))
async def list_projects(user: UserDep, hub: HubDep) -> list[dict[str, Any]]:
    """The user's projects, oldest first."""
    return [project_json(p) for p in await hub.store.list_projects(user.id)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectOut,
    responses=refusals(401, body=True),
)
async def create_project(body: NewProject, user: UserDep, hub: HubDep) -> dict[str, Any]:
    """Create a project owned by the user."""
    return project_json(await hub.store.create_project(user.id, body.name, body.description))
