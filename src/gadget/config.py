"""Settings of every Gadget Code process, read from `GADGET_*` environment variables."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gadget.protocol import PermissionMode


class Settings(BaseSettings):
    """Hub, drone and client settings; each field is `GADGET_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="GADGET_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".gadget")
    database_url: str | None = None
    secret_key: str | None = None
    allow_signup: bool = False
    retry_delay_ms: int = Field(default=5000, ge=0)
    max_retries: int = Field(default=3, ge=0)
    drone_grace_s: float = Field(default=60.0, ge=0)
    host: str = "127.0.0.1"
    port: int = 8420
    token_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    #: Longest a growing block may stay only in memory, and its largest unflushed size.
    flush_interval_ms: int = Field(default=250, gt=0)
    flush_bytes: int = Field(default=16 * 1024, gt=0)
    #: Seconds the hub waits for a drone to acknowledge a work order.
    work_order_ack_timeout_s: float = Field(default=30.0, gt=0)
    #: Optional Redis URL for several hub nodes (python-socketio's AsyncRedisManager,
    #: and the failed-login counts every node shares).
    redis_url: str | None = None
    #: Prefix of every Redis key and channel of this deployment, so that several (or
    #: tests) can share one Redis server; every node of a deployment sets the same one.
    redis_namespace: str = Field(default="gadget", min_length=1, max_length=64,
                                 pattern=r"^[A-Za-z0-9_.:-]+$")  # fmt: skip
    #: Failed logins of one username, and from one client address, within the window
    #: after which `POST /api/auth/login` answers 429 until the window ends.
    login_max_failures: int = Field(default=10, ge=1)
    login_max_failures_per_address: int = Field(default=100, ge=1)
    login_window_s: int = Field(default=300, ge=1, le=86_400)
    #: Threads that hash and check passwords (argon2 uses 4 lanes each), off the event loop.
    password_workers: int = Field(default=2, ge=1, le=32)
    #: Most drones one user may register.
    max_drones_per_user: int = Field(default=10_000, ge=1)
    #: Most IDE sockets one user may have connected to one hub node at once.
    max_ide_sockets_per_user: int = Field(default=2_000, ge=1)
    #: Events a second one drone socket may send on average, and at once (its burst).
    drone_events_per_s: int = Field(default=50_000, ge=1)
    drone_events_burst: int = Field(default=100_000, ge=1)
    #: Events a second one IDE socket may send on average, and at once.
    ide_events_per_s: int = Field(default=200, ge=1)
    ide_events_burst: int = Field(default=1_000, ge=1)
    #: Events refused in a row for their rate after which the socket is disconnected.
    flood_strikes: int = Field(default=200, ge=1)
    #: Largest Socket.IO message a client may send, in bytes (a larger one disconnects it).
    max_event_bytes: int = Field(default=17_000_000, ge=1024)
    #: Longest a request waits for the database before it is refused as unavailable.
    db_timeout_s: float = Field(default=10.0, gt=0)
    #: Most memory held for stream writes not yet stored; past it new stream events are
    #: refused (the drones keep and resend them) until the database catches up.
    uncommitted_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    #: How often deadlines (grace, retry, lock release) are swept.
    sweep_interval_s: float = Field(default=0.5, gt=0)
    #: How long a reconnecting drone that runs nothing may take to ask to recover the
    #: turn its lease still has, before that turn ends.
    recovery_window_s: float = Field(default=5.0, gt=0)
    #: Most packets queued for one IDE socket before it is disconnected as too slow.
    ide_queue_max: int = Field(default=20_000, gt=0)
    #: Bearer token that `GET /metrics` asks for; unset: only loopback clients not behind a
    #: proxy may read it (docs/operations.md).
    metrics_token: str | None = None
    #: The permission mode of new chat sessions (a user may set their own: PATCH /api/settings).
    default_permission_mode: PermissionMode = PermissionMode.ASK

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file in `home`."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.home / 'gadget.db'}"

    def ensure_home(self) -> Path:
        """The data directory, created private (0700) when missing."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.home

    def resolved_secret_key(self) -> str:
        """The JWT signing key: the configured one, or one generated once and kept in `home`."""
        if self.secret_key:
            return self.secret_key
        path = self.home / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.ensure_home()
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


class DroneSettings(BaseSettings):
    """Settings of a drone process and its agent (`GADGET_*`)."""

    model_config = SettingsConfigDict(env_prefix="GADGET_", extra="ignore")

    hub_url: str = "http://127.0.0.1:8420"
    drone_id: str | None = None
    drone_key: str | None = None
    #: A file holding the drone key (mode 0600), read when no key is given.
    drone_key_file: Path | None = None
    workspace: Path = Field(default_factory=Path.cwd)
    #: The hub's data directory on this machine (`GADGET_HOME`), hidden from commands.
    home: Path = Field(default_factory=lambda: Path.home() / ".gadget")
    #: Where the agent's commands run: bubblewrap when it works (auto), always, or never.
    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    #: Whether sandboxed commands may use the network (`GADGET_SANDBOX_NETWORK=off`).
    sandbox_network: bool = True
    #: Extra paths shown read-only inside the sandbox, `:`-separated (e.g. `~/.rustup`).
    sandbox_read_only: str = ""
    #: The bubblewrap program.
    sandbox_bwrap: str = "bwrap"
    llm_base_url: str = "http://127.0.0.1:11434/v1"
    llm_model: str = "qwen3:8b"
    llm_api_key: str = "not-needed"
    agent_max_steps: int = Field(default=50, gt=0)
    llm_context_tokens: int = Field(default=32_000, gt=1000)
    #: Seconds before a model request is abandoned and retried.
    llm_timeout_s: float = Field(default=300.0, gt=0)
    #: Attempts for a model request that fails transiently (refused, 429, 5xx, timeout).
    llm_retries: int = Field(default=3, ge=0)
    command_timeout_s: float = Field(default=120.0, gt=0)
    #: Seconds between SIGTERM and SIGKILL when a command's process group is stopped.
    kill_grace_s: float = Field(default=1.0, ge=0)
    #: Characters of command output kept (head and tail) before the rest is elided.
    command_output_limit: int = Field(default=30_000, gt=100)
    #: First delay before a failed model request is retried (doubles, with jitter).
    llm_retry_delay_s: float = Field(default=1.0, ge=0)
    #: Window in which consecutive text deltas are merged into one event (0 disables).
    emit_coalesce_ms: float = Field(default=15.0, ge=0)
    #: Most bytes of stream events kept until the hub acknowledges them stored; past it
    #: the drone stops reading the model's stream until acknowledgements come back.
    outbox_max_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    #: First and largest delay between attempts to (re)connect to the hub.
    reconnect_delay_s: float = Field(default=1.0, gt=0)
    reconnect_delay_max_s: float = Field(default=30.0, gt=0)
    #: A user's token for `gadget drone register` (instead of logging in).
    token: str | None = None
    #: Ask for token usage in streamed replies (`stream_options.include_usage`); turn off
    #: for a server that refuses the option.
    llm_stream_usage: bool = True
    #: Prices per million prompt / completion tokens; when set, usage reports carry `cost`.
    llm_price_input: float | None = Field(default=None, ge=0)
    llm_price_output: float | None = Field(default=None, ge=0)
    #: Seconds a tool call waits for the person's approval ("ask" mode); unset: no limit.
    approval_timeout_s: float | None = Field(default=None, gt=0)
    #: Snapshots of the workspace around each turn (a shadow git repository in `.gadget/`).
    checkpoints: bool = True
    #: A JSON file `{"mcpServers": {name: {command, args, env} | {url, headers}}}`.
    mcp_config: Path | None = None
    #: Seconds an MCP server has to start and list its tools, and a tool call to answer.
    mcp_start_timeout_s: float = Field(default=30.0, gt=0)
    mcp_call_timeout_s: float = Field(default=300.0, gt=0)
