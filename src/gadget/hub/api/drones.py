"""GET/POST /api/drones, DELETE /api/drones/{id}, POST /api/drones/{id}/terminate."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, StringConstraints

from gadget.hub.api.deps import QUERY_CHECK, HubDep, UserDep
from gadget.hub.api.schemas import MAX_BODY, DroneOut, NewDroneOut, PathId, TerminateOut, refusals
from gadget.hub.auth import Auth
from gadget.hub.exceptions import Conflict, NotFound
from gadget.hub.views import drone_json
from gadget.store.tables import DroneRegistration

router = APIRouter(
    prefix="/api/drones", tags=["drones"], max_body_size=MAX_BODY, dependencies=QUERY_CHECK
)


class NewDrone(BaseModel):
    """A drone to register."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    hostname: Annotated[str, StringConstraints(max_length=255)] = ""


async def _with_state(drones: list[DroneRegistration], hub: HubDep) -> list[dict[str, Any]]:
    views = await hub.drones.views([d.id for d in drones])
    out = []
    for drone in drones:
        stored = drone_json(drone)
        live = {k: v for k, v in views[drone.id].items() if v is not None or k not in stored}
        out.append({**stored, **live})
    return out


async def _own(drone_id: str, user_id: str, hub: HubDep) -> DroneRegistration:
    drone = await hub.store.get_drone(drone_id)
    if drone is None or drone.owner_id != user_id:
        raise NotFound(f"unknown drone {drone_id}")
    return drone


@router.get("", response_model=list[DroneOut], responses=refusals(401))
async def list_drones(user: UserDep, hub: HubDep) -> list[dict[str, Any]]:
    """The user's drones with online state, workspace mode and lock holder."""
    return await _with_state(await hub.store.list_drones(user.id), hub)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=NewDroneOut,
    responses=refusals(401, 409, body=True),
)
async def register_drone(body: NewDrone, user: UserDep, hub: HubDep) -> dict[str, Any]:
    """Register a drone; the key is in this answer only (it is stored hashed).

    409 once the user owns `GADGET_MAX_DRONES_PER_USER` drones.
    """
    cap = hub.settings.max_drones_per_user
    # Two registrations racing at the cap may both pass: the cap bounds abuse, not billing.
    if await hub.store.count_drones(user.id) >= cap:
        raise Conflict(
            f"you have {cap} drones, the most this hub allows (GADGET_MAX_DRONES_PER_USER): "
            "delete one first (DELETE /api/drones/{id})"
        )
    key, key_hash = Auth.new_drone_key()
    drone = await hub.store.create_drone(user.id, body.name, body.hostname, key_hash)
    return {"registration": drone_json(drone), "key": key}


@router.delete("/{drone_id}", status_code=status.HTTP_204_NO_CONTENT, responses=refusals(401, 404))
async def delete_drone(drone_id: PathId, user: UserDep, hub: HubDep) -> Response:
    """Forget a drone: it can no longer connect (a connected socket is closed)."""
    await _own(drone_id, user.id, hub)
    record = await hub.drones.presence.drone(drone_id)
    await hub.store.delete_drone(drone_id)
    if record is not None and record.get("online") and record.get("sid"):
        await hub.sio.disconnect(record["sid"])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{drone_id}/terminate", response_model=TerminateOut, responses=refusals(401, 404))
async def terminate_drone(drone_id: PathId, user: UserDep, hub: HubDep) -> dict[str, Any]:
    """Ask a connected drone to stop: `{"success": bool}`."""
    return {"success": await hub.sessions.terminate(user.id, drone_id)}
