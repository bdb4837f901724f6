"""The one place a model-chosen program is started: under bubblewrap where the machine allows.

:meth:`Sandbox.detect` builds the sandbox once from the settings (it runs bwrap once to
see that it works: user namespaces may be refused); :meth:`Sandbox.wrap` turns a
program's argv and environment into the ones to start. Under bubblewrap the program sees:

- the workspace read-write and the rest of the system read-only;
- empty private `/tmp`, `/var/tmp`, `/run`, `/dev`, home directories (`/home`, `/root`,
  the drone user's home) and an empty read-only `GADGET_HOME`, drone key file and
  workspace `.gadget/`. The workspace is bound back when it lies inside a hidden folder;
  the folders on `PATH`, the drone's own Python and `GADGET_SANDBOX_READ_ONLY` are shown
  read-only, so tools installed in the home keep working;
- its own PID namespace (no other process of the machine, no `/proc/<pid>/environ` of
  the drone), which ends, killing what is left in it, when the program exits;
- no capabilities (also when the drone runs as root), its own IPC namespace, and its
  own network namespace (loopback only) with `GADGET_SANDBOX_NETWORK=off`;
  `--die-with-parent` kills it if the drone dies.

Start the wrapped argv from the event loop's thread: `--die-with-parent` follows the
thread that started bwrap, not the process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import sys
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gadget.config import DroneSettings
from gadget.drone.exceptions import SandboxError
from gadget.drone.fsio import GADGET_DIR

__all__ = ["SECRET_ENV", "Sandbox", "SandboxKind"]

logger = logging.getLogger(__name__)

SandboxKind = Literal["bwrap", "none"]

#: Environment variables a started program never sees (the drone's own secrets).
SECRET_ENV = ("GADGET_DRONE_KEY", "GADGET_LLM_API_KEY", "GADGET_TOKEN", "GADGET_SECRET_KEY")
#: Pointers to the user's session services (agent sockets, buses); hidden under bwrap.
SESSION_ENV = ("SSH_AUTH_SOCK", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "GPG_AGENT_INFO")
#: Replaced by an empty tmpfs: scratch space, runtime sockets (/run), everyone's homes.
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/run", "/home", "/root")
#: Seconds the start-up run of bwrap may take.
PROBE_TIMEOUT_S = 15.0

#: Sandboxes already built, by the settings and environment they came from.
_detected: dict[tuple[object, ...], Sandbox] = {}


@dataclass(frozen=True)
class Sandbox:
    """How model-chosen programs are started: `kind` "bwrap" (confined) or "none"."""

    kind: SandboxKind
    #: Whether started programs can use the network (always True without a sandbox).
    network: bool
    workspace: Path
    #: Why there is no sandbox ("" under bwrap).
    reason: str = ""
    program: str = ""
    hidden: tuple[Path, ...] = ()
    shown: tuple[Path, ...] = ()
    secrets: tuple[Path, ...] = ()

    @classmethod
    async def detect(cls, settings: DroneSettings) -> Sandbox:
        """The sandbox `settings` ask for, built (and bwrap tried) once per process.

        Raises SandboxError when bwrap is required (`GADGET_SANDBOX=bwrap` or
        `GADGET_SANDBOX_NETWORK=off`) but cannot run here.
        """
        key = (
            *(settings.sandbox, settings.sandbox_network, settings.sandbox_bwrap),
            *(settings.sandbox_read_only, settings.workspace, settings.home),
            *(settings.drone_key_file, os.environ.get("HOME"), os.environ.get("PATH")),
        )
        known = _detected.get(key)
        if known is None:
            known = _detected[key] = await cls._build(settings)
        return known

    @classmethod
    async def _build(cls, settings: DroneSettings) -> Sandbox:
        workspace = settings.workspace.resolve()
        if settings.sandbox == "none":
            if not settings.sandbox_network:
                raise SandboxError(
                    "GADGET_SANDBOX_NETWORK=off needs the sandbox, but GADGET_SANDBOX=none; "
                    "set GADGET_SANDBOX=auto (or bwrap), or drop GADGET_SANDBOX_NETWORK"
                )
            return cls("none", True, workspace, reason="GADGET_SANDBOX=none")
        program = shutil.which(settings.sandbox_bwrap)
        problem = (
            f"{settings.sandbox_bwrap} is not installed "
            "(Debian, Ubuntu: apt install bubblewrap; Fedora: dnf install bubblewrap)"
        )
        if program is not None:
            sandbox = cls._confined(settings, workspace, program)
            failure = await sandbox._probe()
            if failure is None:
                return sandbox
            problem = failure
        if settings.sandbox == "bwrap" or not settings.sandbox_network:
            wanted = (
                "GADGET_SANDBOX=bwrap"
                if settings.sandbox == "bwrap"
                else "GADGET_SANDBOX_NETWORK=off"
            )
            raise SandboxError(
                f"{wanted} needs bubblewrap, which does not work here: {problem} — fix that, "
                "or set GADGET_SANDBOX=none to run the agent's commands unconfined"
            )
        return cls("none", True, workspace, reason=f"bubblewrap does not work here: {problem}")

    @classmethod
    def _confined(cls, settings: DroneSettings, workspace: Path, program: str) -> Sandbox:
        homes = [home for home in (_env_home(), _passwd_home()) if home is not None]
        hidden = _unique(p.resolve() for p in [*map(Path, PRIVATE_DIRS), *homes])
        hidden = tuple(sorted((p for p in hidden if p != Path("/")), key=lambda p: len(p.parts)))
        on_path = [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
        resolv = Path("/etc/resolv.conf")  # often a link into the hidden /run
        tools = [Path(sys.prefix), Path(sys.base_prefix), resolv, *on_path]
        extra = [Path(p).expanduser() for p in settings.sandbox_read_only.split(os.pathsep) if p]
        inside = [p.resolve() for p in tools if p.is_absolute()]
        shown = _outermost(
            *(p for p in inside if any(h in p.parents for h in hidden)),  # never a whole home
            *(p.resolve() for p in extra if p.is_absolute()),  # the user's choice, as given
        )
        secrets = [settings.home, workspace / GADGET_DIR]
        if settings.drone_key_file is not None:
            secrets.append(settings.drone_key_file)
        return cls(
            "bwrap",
            settings.sandbox_network,
            workspace,
            program=program,
            hidden=hidden,
            shown=tuple(p for p in shown if not _within(p, workspace)),
            secrets=_unique(Path(p).expanduser().resolve() for p in secrets),
        )

    def wrap(
        self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that start `argv` in `cwd` inside this sandbox.

        The drone's secrets are always left out of the environment. Under bwrap, `cwd`
        must be a folder the sandbox shows (the workspace, or a system folder).
        """
        clean = {k: v for k, v in env.items() if k not in SECRET_ENV}
        if self.kind == "none":
            return list(argv), clean
        for name in SESSION_ENV:
            clean.pop(name, None)
        if "TMPDIR" in clean:
            clean["TMPDIR"] = "/tmp"  # the drone's temp folder is not visible
        return [self.program, *self._arguments(Path(cwd)), "--", *argv], clean

    def _arguments(self, cwd: Path) -> list[str]:
        """bwrap's options; mounts apply in order: hide, show read-only, workspace, secrets."""
        # --cap-drop ALL: bwrap run by root would otherwise keep every capability (umount...).
        args = ["--die-with-parent", "--cap-drop", "ALL", "--unshare-pid", "--unshare-ipc"]
        if not self.network:
            args.append("--unshare-net")
        args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for folder in self.hidden:
            if folder.is_dir():
                args += ["--tmpfs", str(folder)]
        for path in self.shown:
            if path.exists():
                args += ["--ro-bind", str(path), str(path)]
        args += ["--bind", str(self.workspace), str(self.workspace)]
        for secret in self.secrets:
            if secret.is_dir() and self._visible(secret):
                args += ["--tmpfs", str(secret), "--remount-ro", str(secret)]
            elif secret.exists() and self._visible(secret):
                args += ["--ro-bind", "/dev/null", str(secret)]
        return [*args, "--chdir", str(cwd)]

    def _visible(self, path: Path) -> bool:
        """Whether `path` shows inside the sandbox before the secrets are hidden."""
        if _within(path, self.workspace) or any(_within(path, s) for s in self.shown):
            return True
        return not any(_within(path, h) for h in self.hidden)

    async def _probe(self) -> str | None:
        """Run `true` in this sandbox once; None when that works, else what went wrong."""
        argv, env = self.wrap(["true"], self.workspace, os.environ)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=DEVNULL, stdout=DEVNULL, stderr=PIPE, start_new_session=True
            )
        except OSError as exc:
            return f"cannot run {self.program}: {exc}"
        try:
            _, err = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return f"{self.program} did not finish a trial run in {PROBE_TIMEOUT_S:g} s"
        if proc.returncode != 0:
            text = err.decode(errors="replace").strip() or f"exit code {proc.returncode}"
            return f"a trial run failed: {text}"
        return None

    def announce(self) -> None:
        """Log, once at start, how commands run (a warning when they are not confined)."""
        user = _user_name()
        if self.kind == "none":
            logger.warning(
                "no sandbox (%s): the agent's commands run as %s with all of that user's "
                "files, processes and network; run the drone as a dedicated user, or in a "
                "container or VM, for code or prompts you do not trust",
                self.reason,
                user,
            )
            return
        logger.info(
            "sandbox: bubblewrap (network %s); commands see the workspace read-write, the "
            "system read-only, and no home folders, /tmp, /run or other processes",
            "on" if self.network else "off",
        )
        for folder in self.hidden:
            if _within(folder, self.workspace):
                logger.warning(
                    "the workspace %s contains %s, which the sandbox therefore cannot hide",
                    self.workspace,
                    folder,
                )


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _unique(paths: Iterable[Path]) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(paths))


def _env_home() -> Path | None:
    try:
        return Path.home()
    except RuntimeError:  # no HOME and no passwd entry
        return None


def _outermost(*paths: Path) -> tuple[Path, ...]:
    """The paths not inside another of them (a bind of a folder brings its subfolders)."""
    unique = _unique(paths)
    return tuple(p for p in unique if not any(q != p and _within(p, q) for q in unique))


def _passwd_home() -> Path | None:
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return None


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"
