"""The REST API against its own OpenAPI schema: schemathesis on the real hub over loopback.

Every operation of `/openapi.json` gets generated requests, valid ones and
invalid ones, with a signed-up user's token (and without it): no answer may be a
500, every answer must be one the schema declares (status, headers, body), and
invalid requests must be refused. Derandomized, with a bounded number of examples
per operation, so a run is the same every time (~20 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

from gadget.config import Settings
from tests.harness import hub_settings, running_hub

#: Generated requests per operation and mode (valid / invalid data); fewer where each
#: request hashes or checks a password (argon2, ~0.1-0.5 s of CPU on a busy machine).
EXAMPLES = 20
PASSWORD_EXAMPLES = 6
PASSWORD_ROUTES = {"/api/auth/login", "/api/auth/register"}


@contextlib.contextmanager
def hub_in_thread(hub: Settings) -> Iterator[str]:
    """Serve a hub on its own event loop in a thread (schemathesis calls it synchronously)."""
    ready = threading.Event()
    found: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        found["stop"] = (asyncio.get_running_loop(), stop)
        async with running_hub(hub) as h:
            found["url"] = h.url
            ready.set()
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            found["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="hub", daemon=True)
    thread.start()
    ready.wait(60)
    if "url" not in found:
        raise RuntimeError(f"the hub did not start: {found.get('error')!r}")
    try:
        yield str(found["url"])
    finally:
        loop, stop = found["stop"]
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
    if "error" in found:
        raise found["error"]


def _config(token: str) -> schemathesis.Config:
    """The user's token for the hub's bearer scheme; a 413 (too large a body) is a refusal too."""
    rejections = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
    return schemathesis.Config.from_str(
        f"""
        [auth.openapi.HTTPBearer]
        bearer = "{token}"
        [checks.negative_data_rejection]
        expected-statuses = {rejections}
        """
    )


@dataclass(frozen=True)
class Pass:
    """One way of generating requests for every operation."""

    name: str
    mode: GenerationMode
    #: Sent with every request; schemathesis then cannot leave the token out.
    headers: dict[str, str] | None = None
    excluded: tuple[Any, ...] = ()


def _passes(token: str) -> list[Pass]:
    return [
        Pass("valid data", GenerationMode.POSITIVE),
        # Invalid data, and requests without the token (schemathesis drops it itself).
        Pass("invalid data", GenerationMode.NEGATIVE),
        # Invalid data that reaches the handlers: always the token. A case whose only
        # invalid part was the dropped token is then valid, so "invalid data must be
        # rejected" would misfire here; no 500 and schema conformance still apply.
        Pass(
            "invalid data, authenticated",
            GenerationMode.NEGATIVE,
            {"Authorization": f"Bearer {token}"},
            (negative_data_rejection,),
        ),
    ]


def _check(operation: Any, how: Pass) -> None:
    @settings(
        max_examples=PASSWORD_EXAMPLES if operation.path in PASSWORD_ROUTES else EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=how.mode))
    def examples(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=how.headers, excluded_checks=list(how.excluded))

    examples()


def test_every_operation_answers_as_its_schema_says(tmp_path: Path) -> None:
    with hub_in_thread(hub_settings(tmp_path / "home")) as url:
        r = httpx.post(f"{url}/api/auth/register", json={"username": "ann", "password": "pw-1"})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=_config(token))
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10, [op.label for op in operations]
        failures: list[str] = []
        for operation in operations:
            for how in _passes(token):
                try:
                    _check(operation, how)
                except (Exception, BaseExceptionGroup) as exc:
                    failures.append(f"{operation.label} ({how.name}): {exc}"[:3000])
        if failures:
            pytest.fail("\n\n".join(failures))
