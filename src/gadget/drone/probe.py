"""Is the configured model reachable? Told to the hub at connect, and by `gadget up` at start."""

from __future__ import annotations

from typing import Any

import httpx

from gadget.config import DroneSettings


async def probe_model(settings: DroneSettings, timeout: float = 2.0) -> dict[str, Any]:
    """`{"name", "baseUrl", "reachable", "error"?}` for the drone's model endpoint.

    `error` says what to set when the endpoint does not answer or refuses the key.
    """
    base = settings.llm_base_url.rstrip("/")
    info: dict[str, Any] = {"name": settings.llm_model, "baseUrl": base, "reachable": False}
    headers = {"Authorization": f"Bearer {settings.llm_api_key}"}
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            answer = await client.get(f"{base}/models", headers=headers)
    except httpx.HTTPError as exc:
        info["error"] = (
            f"cannot reach the model at {base} ({type(exc).__name__}): start the model server "
            "(e.g. `ollama serve`) or set GADGET_LLM_BASE_URL and GADGET_LLM_MODEL for the drone"
        )
        return info
    if answer.status_code in (401, 403):
        info["error"] = (
            f"the model server at {base} refused the key: set GADGET_LLM_API_KEY for the drone"
        )
        return info
    info["reachable"] = True
    return info
