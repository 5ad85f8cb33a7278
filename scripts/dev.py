"""`python -m scripts.dev` (what `make run` starts): the whole local stack.

Redis (the one at REDIS_URL when it answers, else a private redis-server on a free port), then,
under honcho, an SMTP sink saving mail under var/mail (unless MAIL_SERVER is set), the web server
and one RQ worker that is restarted when it dies. Every process gets the same environment.
Ctrl-C or SIGTERM stops them all: honcho starts each one in its own session and signals the whole
group; the private Redis stops last, so the worker's warm shutdown can still talk to it.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import load_dotenv
from honcho.manager import Manager

from scripts.services import free_port, port_open, redis_answers, redis_command, smtp_sink_command, wait_for_port
from scripts.supervise import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_MAIL_PORT = 8025
# Seconds the embedded Redis gets to answer (it is up in ~15 ms) and to stop.
REDIS_WAIT = 10


class StackError(Exception):
    """The stack cannot start as configured; the message says what to change."""


@dataclass
class Plan:
    """What to run: one environment for every process, honcho's command lines, notes for the user."""

    env: dict[str, str]
    processes: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The private Redis to start before honcho (and stop after it): (port, data directory).
    embedded_redis: tuple[int, Path] | None = None


def python(*args: str) -> str:
    """A shell command running this interpreter (the venv's, whatever PATH says)."""
    return shlex.join([sys.executable, *args])


def plan_redis(plan: Plan) -> None:
    """Use REDIS_URL when it answers PING; otherwise start a private Redis and point everyone at it."""
    url = plan.env.get("REDIS_URL") or DEFAULT_REDIS_URL
    if redis_answers(url):
        plan.env["REDIS_URL"] = url
        plan.notes.append(f"redis:  {url} (already running)")
        return
    port = free_port()
    data_dir = VAR / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    plan.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    plan.embedded_redis = (port, data_dir)
    plan.notes.append(f"redis:  REDIS_URL={plan.env['REDIS_URL']} (embedded redis-server, log and data in "
                      f"{_shown(data_dir)}; nothing answered at {url})")


def plan_mail(plan: Plan) -> None:
    """Without MAIL_SERVER, run an SMTP sink that keeps every message as a Maildir under var/mail."""
    if plan.env.get("MAIL_SERVER"):
        plan.notes.append(f"mail:   sent through {plan.env['MAIL_SERVER']}:{plan.env.get('MAIL_PORT', '25')}")
        return
    port = _mail_port(plan.env.get("MAIL_PORT"))
    plan.env["MAIL_PORT"] = str(port)
    maildir = VAR / "mail"
    plan.processes["mail"] = "exec " + shlex.join(smtp_sink_command(port, maildir))
    plan.notes.append(f"mail:   SMTP sink on 127.0.0.1:{port}, every message saved in the Maildir "
                      f"{_shown(maildir)}; read it with: {_shown(Path(sys.executable))} -m scripts.read_mail")


def _mail_port(configured: str | None) -> int:
    """MAIL_PORT when free; the default 8025 gives way to a free port (only our own app uses it)."""
    if configured:
        if port_open("127.0.0.1", int(configured)):
            raise StackError(f"MAIL_PORT {configured} is already in use: unset it or choose another.")
        return int(configured)
    return free_port() if port_open("127.0.0.1", DEFAULT_MAIL_PORT) else DEFAULT_MAIL_PORT


def plan_app(plan: Plan) -> None:
    """The web server on PORT and one worker, restarted whenever it dies."""
    port = int(plan.env.get("PORT") or 5000)
    host = plan.env.get("HOST", "127.0.0.1")
    if port_open("127.0.0.1", port):
        raise StackError(f"Port {port} is already in use: stop what runs there or start with PORT=<another>.")
    # honcho's own CLI would give each process type its own PORT (5000, 5100, ...); we set one for
    # everyone, so the worker's links in emails (PUBLIC_URL's default) point at this web server.
    plan.env["PORT"] = str(port)
    plan.processes["web"] = "exec " + python("run.py")
    plan.processes["worker"] = "exec " + python("-m", "scripts.supervise", "--", sys.executable, "-m", "worker")
    shown_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    plan.notes.insert(0, f"open:   http://{shown_host}:{port}")


def build_plan(environ: dict[str, str]) -> Plan:
    """Decide every process and the shared environment (.env already loaded into environ)."""
    env = dict(environ)
    # Output reaches honcho through pipes: unbuffered, so log lines show up as they happen.
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    plan = Plan(env)
    # The SMTP sink's Maildir and the embedded Redis live under var/, whatever DATABASE_URL says
    # (only the default SQLite path used to create it).
    VAR.mkdir(parents=True, exist_ok=True)
    plan_redis(plan)
    plan_mail(plan)
    plan_app(plan)
    return plan


def banner(plan: Plan) -> str:
    """What the developer needs to know, printed before the process output starts."""
    lines = ["", "Microblog: local stack (Ctrl-C stops everything)", *("  " + n for n in plan.notes), ""]
    return "\n".join(lines)


def start_redis(port: int, data_dir: Path) -> subprocess.Popen:
    """Start the private Redis outside honcho and wait until it answers.

    Under honcho it would get SIGTERM together with the worker, whose warm shutdown (finish the job,
    deregister) needs Redis; started here, it answers before web and worker start and stops last.
    """
    with open(data_dir / "redis.log", "ab") as log:
        # preexec_fn is safe here: honcho has not started, dev.py has no other thread yet.
        proc = subprocess.Popen(redis_command(port, data_dir), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=die_with_parent)  # noqa: PLW1509
    try:
        wait_for_port("127.0.0.1", port, REDIS_WAIT)
    except TimeoutError:
        stop_redis(proc)
        raise StackError(f"the embedded redis-server did not start; see {_shown(data_dir / 'redis.log')}") from None
    return proc


def stop_redis(proc: subprocess.Popen) -> None:
    """SIGTERM the private Redis (by its PID), SIGKILL it if it does not go in time."""
    proc.terminate()
    try:
        proc.wait(REDIS_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(plan: Plan) -> int:
    """Run the processes under honcho until Ctrl-C/SIGTERM or until one of them exits."""
    manager = Manager()
    for name, command in plan.processes.items():
        manager.add_process(name, command, env=plan.env, cwd=str(ROOT))
    manager.loop()
    return manager.returncode or 0


def _shown(path: Path) -> str:
    """A path relative to the project when it is inside it (shorter to read and to copy)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def main() -> None:
    """Load .env, plan the stack, print where things are, and run it."""
    load_dotenv(ROOT / ".env")  # the same precedence as run.py and the worker: real env wins
    try:
        plan = build_plan(dict(os.environ))
    except StackError as exc:
        sys.exit(f"make run: {exc}")
    redis_proc = None
    try:
        if plan.embedded_redis:
            redis_proc = start_redis(*plan.embedded_redis)
        print(banner(plan), flush=True)
        code = run(plan)
    except StackError as exc:
        code = f"make run: {exc}"
    finally:
        if redis_proc is not None:
            stop_redis(redis_proc)
    sys.exit(code)


if __name__ == "__main__":
    main()
