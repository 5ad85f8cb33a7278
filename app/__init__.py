"""The application factory."""
from __future__ import annotations

import os
import secrets
import tempfile
from typing import Any, Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
import sqlalchemy as sa
from flask import Flask

from app.logs import configure_logging
from app.extensions import babel, db, login, mail, socketio
from config import Config, normalize_database_url


def create_app(config: Config | None = None, **overrides: Any) -> Flask:
    """Build a configured app; `overrides` win over the environment (tests use them).

    WEB=False builds only what jobs use (the worker's app): database, mail, Babel, Redis and the
    templates' filters, without pages, sockets, forms, limits, operations or commands.
    """
    app = Flask(__name__)
    app.config.from_object(config or Config())
    app.config.update(overrides)
    app.config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(app.config["SQLALCHEMY_DATABASE_URI"])
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret_key(app.instance_path)
    configure_logging(app.config)
    register_extensions(app)
    if app.config.get("WEB", True):
        register_web(app)
    return app


def register_web(app: Flask) -> None:
    """Everything a process serving pages (or the `flask` command) needs and a job never uses.

    Skipped by the worker (WEB=False): every work horse is a fork of the worker, and its resident
    memory counts every page it shares with it, so each module the worker imports weighs on every job.
    """
    from app import security

    register_web_extensions(app)
    init_socketio(app)
    register_blueprints(app)
    security.init_app(app)
    register_cli(app)
    app.shell_context_processor(_shell_context)


def _instance_secret_key(instance_path: str) -> str:
    """A development SECRET_KEY made once and kept in the instance folder (never in code)."""
    path = os.path.join(instance_path, "secret_key")
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    # Write a whole file aside, then link it into place: when web and worker start together,
    # one link wins, nobody ever reads a half-written key, and both use the winner's.
    fd, tmp = tempfile.mkstemp(dir=instance_path, prefix=".secret_key.")
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return _read_key(path)


def _read_key(path: str) -> str:
    """The key stored at path; an empty file is an error (an empty key would disable sessions)."""
    with open(path) as fh:
        key = fh.read().strip()
    if not key:
        raise RuntimeError(f"{path} is empty: delete it to have a new key made, or set SECRET_KEY.")
    return key


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL and a busy timeout: a worker and a web process write the same SQLite file."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def register_extensions(app: Flask) -> None:
    """Bind the extensions jobs use as well as pages: database, mail, Babel, Redis, the filters."""
    from app import formatting

    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:///:memory:"):
        os.makedirs(os.path.dirname(uri[len("sqlite:///"):]) or ".", exist_ok=True)
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
    if app.config.get("MIGRATIONS", True):
        register_migrations(app)
    mail.init_app(app)
    from app.i18n import inject_languages, select_locale

    babel.init_app(app, locale_selector=select_locale)
    app.context_processor(inject_languages)  # emails too: `<html lang>`
    formatting.init_app(app)
    app.extensions["redis"] = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
        app.config["REDIS_URL"], max_connections=64, timeout=5, socket_connect_timeout=2, socket_timeout=10,
    ))


def register_web_extensions(app: Flask) -> None:
    """Bind the extensions of pages alone: logins, CSRF, Bootstrap."""
    from app.web_extensions import bootstrap, csrf

    login.init_app(app)
    csrf.init_app(app)
    bootstrap.init_app(app)


def init_socketio(app: Flask) -> None:
    """The Socket.IO server; with a message queue it relays what workers publish."""
    from app.socket_queue import ResyncRedisManager
    from app.sockets import on_disconnect, resync_all_users

    options: dict[str, Any] = {"async_mode": app.config["SOCKETIO_ASYNC_MODE"],
                               "ping_interval": app.config["SOCKETIO_PING_INTERVAL"],
                               "ping_timeout": app.config["SOCKETIO_PING_TIMEOUT"]}
    queue_url = app.config.get("SOCKETIO_MESSAGE_QUEUE")
    if queue_url:
        # No silent retries inside redis-py: a dropped subscription must surface so we re-sync.
        manager = ResyncRedisManager(queue_url, channel="flask-socketio",
                                     redis_options={"retry": Retry(NoBackoff(), 0)})
        manager.on_resubscribe = lambda: socketio.start_background_task(resync_all_users, app)
        options["client_manager"] = manager
    else:
        from app.room_index import IndexedManager

        options["client_manager"] = IndexedManager()
    options["cors_allowed_origins"] = origin_checker(app.config.get("SOCKETIO_ORIGINS") or [])
    socketio.init_app(app, **options)
    socketio.server.on("disconnect", on_disconnect, namespace="/")  # no request context: see on_disconnect
    # Flask-SocketIO pushes a request context for every socket event, and Flask routes it. Without a
    # rule for the Socket.IO path each one raised NotFound and kept it on the request: a reference
    # cycle (traceback -> frames -> context -> request) of ~70 objects per event that only a full
    # garbage collection could free (app/gc_policy.py). HTTP never reaches this rule: the
    # Socket.IO middleware answers that path before Flask does.
    for websocket in (False, True):  # the connection's first request was a poll or a WebSocket upgrade
        app.add_url_rule(socketio.sockio_mw.engineio_path, "socketio", _socketio_path_only, websocket=websocket)
    from app.admission import ConnectAdmission, PageAdmission, yield_inside_pages

    # Outside Flask-SocketIO's middleware: a storm of handshakes is paced before any of it runs.
    app.wsgi_app = ConnectAdmission(app.wsgi_app, app.config["SOCKET_CONNECT_SLOTS"])
    if app.config["SOCKETIO_ASYNC_MODE"] in ("eventlet", "gevent") and app.config["PAGE_SLOTS"]:
        # Only a cooperative hub needs it: OS threads are preempted, a greenlet runs until it yields.
        app.wsgi_app = PageAdmission(app.wsgi_app, app.config["PAGE_SLOTS"], max_body=app.config["MAX_CONTENT_LENGTH"],
                                     lease=app.config["PAGE_LEASE_MS"] / 1000)
        with app.app_context():
            yield_inside_pages(app, db.engine)
    app.extensions["progress_emitter"] = socketio


def _socketio_path_only() -> tuple[str, int]:
    """The Socket.IO path's rule (see init_socketio); the middleware answers it before Flask can."""
    return "Not Found", 404


def origin_checker(extra: list[str]) -> Callable[[str | None, dict], bool]:
    """Allow sockets from the server's own origin and the configured extra ones; never '*'.

    Refusing other origins stops cross-site WebSocket hijacking with the user's cookie.
    """
    allowed = {o.rstrip("/") for o in extra if o.strip() not in ("*", "")}

    def check(origin: str | None, environ: dict) -> bool:
        if origin is None:
            return True  # not a browser: the session cookie is still required to connect
        host = environ.get("HTTP_HOST", "")
        own = {f"{environ.get('wsgi.url_scheme', 'http')}://{host}"}
        # Behind a TLS-terminating load balancer the page's origin is https://<public host>.
        forwarded_proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip()
        forwarded_host = environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip() or host
        if forwarded_proto or environ.get("HTTP_X_FORWARDED_HOST"):
            own.add(f"{forwarded_proto or environ.get('wsgi.url_scheme', 'http')}://{forwarded_host}")
        return origin in own or origin in allowed

    return check


def register_blueprints(app: Flask) -> None:
    """Mount the blueprints and the socket handlers."""
    from app import sockets  # noqa: F401  (registers the Socket.IO handlers)
    from app.auth import bp as auth_bp
    from app.errors import bp as errors_bp
    from app.i18n import bp as i18n_bp
    from app.main import bp as main_bp
    from app.tasks import bp as tasks_bp

    app.register_blueprint(errors_bp)
    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(main_bp)
    app.register_blueprint(tasks_bp)
    app.register_blueprint(i18n_bp)
    register_operations(app)


def register_operations(app: Flask) -> None:
    """/healthz, /metrics and the RQ dashboard under /admin/rq (issue 9)."""
    from app.ops import bp as ops_bp
    from app.ops.dashboard import init_dashboard

    from app.expiry import is_expired

    app.register_blueprint(ops_bp)
    init_dashboard(app)
    app.jinja_env.globals["task_expired"] = is_expired


def register_migrations(app: Flask) -> None:
    """`flask db …` (Flask-Migrate). Imported here, not in app.extensions: Alembic is ~22 MB that the
    worker (MIGRATIONS=False) and each work horse forked from it would carry for nothing."""
    from flask_migrate import Migrate

    Migrate(app, db, render_as_batch=True)


def register_cli(app: Flask) -> None:
    """Add the project's `flask` commands."""
    from app.cli import seed_posts
    from app.cli_tasks import set_admin, tasks_group
    from app.translate import translate

    app.cli.add_command(seed_posts)
    app.cli.add_command(set_admin)
    app.cli.add_command(tasks_group)
    app.cli.add_command(translate)


def _shell_context() -> dict[str, Any]:
    """Names `flask shell` starts with."""
    from app.models import Post, Task, User

    return {"db": db, "sa": sa, "User": User, "Post": Post, "Task": Task}
