"""The `gadget` command's administrative subcommands, run as subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pexpect  # type: ignore[import-untyped]

from tests.harness import HubHarness


def gadget(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GADGET_HOME": str(home),
        "GADGET_SECRET_KEY": "test-secret-key-0123456789abcdef0123456789",
    }
    return subprocess.run(
        [sys.executable, "-m", "gadget.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_user_add_creates_a_user_who_can_log_in(
    tmp_path: Path, hub_factory: Callable[..., AbstractAsyncContextManager[HubHarness]]
) -> None:
    done = gadget("user", "add", "alice", "--password", "s3cret", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert "created user alice" in done.stdout
    again = gadget("user", "add", "alice", "--password", "other", home=tmp_path / "home")
    assert again.returncode == 1 and "taken" in again.stderr
    async with hub_factory(allow_signup=False) as hub:
        ok = await hub.http.post(
            "/api/auth/login", json={"username": "alice", "password": "s3cret"}
        )
        assert ok.status_code == 200
        bad = await hub.http.post(
            "/api/auth/login", json={"username": "alice", "password": "other"}
        )
        assert bad.status_code == 401
        closed = await hub.http.post(
            "/api/auth/register", json={"username": "bob", "password": "x"}
        )
        assert closed.status_code == 403


def test_secret_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    from gadget.config import Settings

    settings = Settings(home=tmp_path / "home")
    first = settings.resolved_secret_key()
    assert settings.resolved_secret_key() == first
    assert (tmp_path / "home" / "secret_key").stat().st_mode & 0o777 == 0o600


async def test_hub_command_serves_with_settings_from_flags(tmp_path: Path) -> None:
    from tests.test_local import free_port, read_until

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GADGET_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gadget.cli", "hub", "--port", str(port), "--home", str(tmp_path / "h"),
        "--allow-signup", "--drone-grace-s", "5", "--secret-key", "k" * 40,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        await read_until(proc.stdout, "hub listening")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
            for name in ("first", "second"):  # the second needs --allow-signup
                r = await http.post("/api/auth/register", json={"username": name, "password": "pw"})
                assert r.status_code == 201, r.text
        assert (tmp_path / "h" / "gadget.db").exists()
        assert not (tmp_path / "h" / "secret_key").exists()  # --secret-key was used
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def gadget_in(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`gadget ARGS` against `home`, with `stdin` as its input (not a terminal)."""
    env = {
        **os.environ,
        "GADGET_HOME": str(home),
        "GADGET_SECRET_KEY": "test-secret-key-0123456789abcdef0123456789",
    }
    env.pop("GADGET_PASSWORD", None)
    return subprocess.run(
        [sys.executable, "-m", "gadget.cli", *args],
        env=env, input=stdin or "", capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_user_list_passwd_and_remove(
    tmp_path: Path, hub_factory: Callable[..., AbstractAsyncContextManager[HubHarness]]
) -> None:
    home = tmp_path / "home"
    empty = gadget_in(home, "user", "list")
    assert empty.returncode == 0 and "no users yet" in empty.stdout
    for name in ("bob", "alice"):
        assert gadget_in(home, "user", "add", name, "--password", "old-pw").returncode == 0
    listed = gadget_in(home, "user", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert [r[0] for r in rows] == ["alice", "bob"]  # by name, with id and creation time
    assert all(len(r[1]) == 32 and r[2] == "created" and r[-1] == "UTC" for r in rows)

    changed = gadget_in(home, "user", "passwd", "alice", "--password", "new-pw")
    assert changed.returncode == 0 and "changed the password of alice" in changed.stdout
    async with hub_factory() as hub:
        token = await hub.signup("carol")  # carol owns something, to see it go with her
        await hub.create_drone(token)
        await hub.create_project(token)
        for password, status in (("new-pw", 200), ("old-pw", 401)):
            r = await hub.http.post(
                "/api/auth/login", json={"username": "alice", "password": password}
            )
            assert r.status_code == status, (password, r.text)

    refused = gadget_in(home, "user", "remove", "carol")  # no --yes and no terminal
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    declined = gadget_in(home, "user", "remove", "carol", stdin="n\n")
    assert declined.returncode == 2  # stdin is not a terminal: still refused
    removed = gadget_in(home, "user", "remove", "carol", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert "removed user carol and all their projects, drones and chat sessions" in removed.stdout
    assert [line.split()[0] for line in gadget_in(home, "user", "list").stdout.splitlines()] == [
        "alice",
        "bob",
    ]
    async with hub_factory() as hub:
        r = await hub.http.post("/api/auth/login", json={"username": "carol", "password": "pw"})
        assert r.status_code == 401
        assert await hub.hub.store.list_drones(token_owner(hub, token)) == []


def token_owner(hub: HubHarness, token: str) -> str:
    return hub.hub.auth.user_id_from_token(token)


def test_user_commands_name_an_unknown_user_clearly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for args in (("passwd", "ghost", "--password", "x"), ("remove", "ghost", "--yes")):
        done = gadget_in(home, "user", *args)
        assert done.returncode == 1, done
        assert done.stderr == (
            f"gadget user {args[0]}: no user named 'ghost' (see `gadget user list`)\n"
        )
    empty = gadget_in(home, "user", "passwd", "ghost", "--password", "")
    assert empty.returncode != 0 and "Traceback" not in empty.stderr


def test_passwd_forgets_the_password_gadget_up_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert gadget_in(home, "user", "add", "me", "--password", "generated").returncode == 0
    state = {"user": {"username": "me", "password": "generated"}, "drones": {}}
    (home / "local.json").write_text(json.dumps(state))
    done = gadget_in(home, "user", "passwd", "me", "--password", "mine")
    assert done.returncode == 0 and "no longer shows the old one" in done.stdout
    assert json.loads((home / "local.json").read_text())["user"] == {"username": "me"}


async def test_hub_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await asyncio.to_thread(gadget_in, tmp_path / "home", "hub", "--port", str(port))
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr == f"gadget hub: port {port} is in use: try --port\n"


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    env_before = os.environ.get("GADGET_PORT")
    os.environ["GADGET_PORT"] = "eighty"
    try:
        done = gadget_in(tmp_path / "home", "hub")
    finally:
        if env_before is None:
            del os.environ["GADGET_PORT"]
        else:
            os.environ["GADGET_PORT"] = env_before
    assert done.returncode == 2
    assert done.stderr.startswith("gadget: GADGET_PORT='eighty': Input should be a valid integer")
    assert len(done.stderr.splitlines()) == 1


def in_terminal(home: Path, *args: str, answers: list[tuple[str, str]]) -> tuple[int, str]:
    """`gadget ARGS` in a pseudo-terminal, answering each prompt: (exit code, all it printed)."""
    env = {**os.environ, "GADGET_HOME": str(home), "GADGET_SECRET_KEY": "k" * 40}
    env.pop("GADGET_PASSWORD", None)
    child = pexpect.spawn(
        sys.executable, ["-m", "gadget.cli", *args], env=env, encoding="utf-8", timeout=60
    )
    for prompt, answer in answers:
        child.expect_exact(prompt)
        child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.before or ""


def test_passwd_asks_twice_and_remove_asks_first_in_a_terminal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert gadget_in(home, "user", "add", "dora", "--password", "pw1").returncode == 0
    code, out = in_terminal(
        home, "user", "passwd", "dora", answers=[("password for dora: ", "a"), ("again: ", "b")]
    )
    assert code == 2 and "passwords differ" in out
    code, out = in_terminal(
        home, "user", "passwd", "dora", answers=[("password for dora: ", "pw2"), ("again: ", "pw2")]
    )
    assert code == 0 and "changed the password of dora" in out
    question = "remove user dora and all their projects, drones and chat sessions? [y/N] "
    code, out = in_terminal(home, "user", "remove", "dora", answers=[(question, "")])
    assert code == 1 and "nothing removed" in out
    code, out = in_terminal(home, "user", "remove", "dora", answers=[(question, "y")])
    assert code == 0 and "removed user dora" in out


ROOT = Path(__file__).resolve().parent.parent


def pairs(words: list[str]) -> list[tuple[str, str]]:
    """(the word before, the word) for each word: a placeholder's meaning is its flag."""
    return list(zip(["", *words], words, strict=False))


def readme_gadget_commands() -> list[list[str]]:
    """The arguments of every `gadget …` line the README gives to run: in sh blocks, the
    command table, and code spans with flags (not a mention such as `gadget chat`)."""
    text = (ROOT / "README.md").read_text()
    pieces = [p for p in re.findall(r"`([^`\n]+)`", text) if " -" in p]
    pieces += re.findall(r"^\| `(gadget [^`]+)`", text, flags=re.M)
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        pieces += [line.split("#")[0] for line in block.splitlines()]
    found = []
    for piece in pieces:
        for command in piece.replace("[", "").replace("]", "").split("&&"):
            if re.search(r"(^|\s)gadget(\s|$)", command) and "…" not in command:
                words = shlex.split(command)
                args = words[words.index("gadget") + 1 :]
                if args:  # not "the `gadget` command"
                    found.append(
                        ["8421" if a == "P" and b == "--port" else a for b, a in pairs(args)]
                    )
    return found


def test_every_gadget_command_in_the_readme_is_accepted_as_written() -> None:
    from gadget.cli import build_parser

    commands = readme_gadget_commands()
    shown = {" ".join(c[:2]) for c in commands}
    assert {"up", "hub --host", "user add", "user list", "user passwd", "user remove"} <= shown
    assert {"drone register", "chat --hub", "up --print-drone", "up --forget-drone"} <= shown
    assert len(commands) >= 20
    for args in commands:
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:  # argparse's way to refuse (2) or to show --help (0)
            assert exc.code == 0, f"the README's `gadget {' '.join(args)}` is refused"


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "Run the tests, in the clone" in readme and "```sh\nuv run pytest\n```" in readme
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ci[-1] == "uv run pytest"


def test_the_installed_entry_point_works_from_another_folder(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("gadget")
    assert script.exists(), "the project's console script `gadget` is not installed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GADGET_")}
    env["GADGET_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [str(script), "up", "--print-drone"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        f"gadget up: no drone is registered for {tmp_path.resolve()} yet: run `gadget up` there\n"
    )
    helped = subprocess.run(
        [str(script), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0
    for command in ("hub", "user", "drone", "chat", "up"):
        assert command in helped.stdout
