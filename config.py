"""Configuration: one class, every value from the environment (and `.env`)."""
import os
from datetime import timedelta

BASEDIR = os.path.abspath(os.path.dirname(__file__))


def _env_bool(name: str, default: bool = False) -> bool:
    """Read a yes/no environment variable."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    """Read an integer environment variable, naming it when it is malformed."""
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


class Config:
    """Settings read from the environment when an app is created."""

    def __init__(self) -> None:
        port = _env_int("PORT", 5000)
        # None means: generate one on first start and keep it in the instance folder.
        self.SECRET_KEY = os.environ.get("SECRET_KEY") or None
        self.SQLALCHEMY_DATABASE_URI = normalize_database_url(
            os.environ.get("DATABASE_URL") or "sqlite:///" + os.path.join(BASEDIR, "var", "app.db")
        )
        self.REDIS_URL = os.environ.get("REDIS_URL") or "redis://localhost:6379/0"
        self.TASK_QUEUE = os.environ.get("TASK_QUEUE") or "microblog-tasks"
        # Without MAIL_SERVER, mail goes to the local sink that `make run` starts on 8025.
        self.MAIL_SERVER = os.environ.get("MAIL_SERVER") or "127.0.0.1"
        self.MAIL_PORT = _env_int("MAIL_PORT", 25 if os.environ.get("MAIL_SERVER") else 8025)
        self.MAIL_USE_TLS = _env_bool("MAIL_USE_TLS")
        self.MAIL_USERNAME = os.environ.get("MAIL_USERNAME")
        self.MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD")
        self.MAIL_TIMEOUT = _env_int("MAIL_TIMEOUT", 30)
        self.ADMINS = [a.strip() for a in (os.environ.get("ADMINS") or "no-reply@microblog.localhost").split(",")]
        self.MAIL_DEFAULT_SENDER = self.ADMINS[0]
        self.PORT = port
        self.EXPORT_DIR = os.environ.get("EXPORT_DIR") or os.path.join(BASEDIR, "var", "exports")
        self.MAIL_ATTACHMENT_MAX_BYTES = _env_int("MAIL_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
        self.PUBLIC_URL = (os.environ.get("PUBLIC_URL") or f"http://127.0.0.1:{port}").rstrip("/")
        self.POSTS_PER_PAGE = _env_int("POSTS_PER_PAGE", 25)
        # New sockets between first request and end of `on_connect` at once (app/admission.py).
        self.SOCKET_CONNECT_SLOTS = _env_int("SOCKET_CONNECT_SLOTS", 8)
        # Page requests running at once on eventlet/gevent (app/admission.py): the others wait, so a
        # progress event waits behind at most this many pages. 0 turns the gate off.
        self.PAGE_SLOTS = _env_int("PAGE_SLOTS", 1)
        # Milliseconds a page may hold its slot before the next page goes in beside it (it is then
        # waiting on I/O, not using the CPU).
        self.PAGE_LEASE_MS = _env_int("PAGE_LEASE_MS", 500)
        # Web process: seconds between the garbage collections that walk every object (app/gc_policy.py);
        # the ones in between skip what survived the last. 0 leaves CPython's collector as it is.
        self.GC_FULL_INTERVAL = _env_int("GC_FULL_INTERVAL", 600)
        # Seconds an export may run before RQ stops it; generous, a million posts take ~10 s.
        self.TASK_TIMEOUT = _env_int("TASK_TIMEOUT", 3600)
        # How often a process looks for tasks whose job died with its worker.
        self.SWEEP_INTERVAL = _env_int("SWEEP_INTERVAL", 10)
        # A task whose job is missing from Redis for this long was lost (e.g. Redis restarted).
        self.SWEEP_ENQUEUE_GRACE = _env_int("SWEEP_ENQUEUE_GRACE", 30)
        # How often a busy RQ worker proves it is alive; the sweep trusts 3 missed beats.
        self.JOB_MONITORING_INTERVAL = _env_int("JOB_MONITORING_INTERVAL", 5)
        # run.py (the web server) defaults this to eventlet; CLI, worker and tests stay threaded.
        self.SOCKETIO_ASYNC_MODE = os.environ.get("SOCKETIO_ASYNC_MODE") or "threading"
        self.SOCKETIO_MESSAGE_QUEUE = self.REDIS_URL
        # Seconds between the server's pings to a socket, and how long it waits for the answer before
        # it drops the socket (engine.io's defaults). Shorter finds dead peers sooner, at a cost per socket.
        self.SOCKETIO_PING_INTERVAL = _env_int("SOCKETIO_PING_INTERVAL", 25)
        self.SOCKETIO_PING_TIMEOUT = _env_int("SOCKETIO_PING_TIMEOUT", 20)
        # Extra origins a browser may open a socket from (comma separated), besides the server's
        # own (scheme://Host of the request); '*' is ignored, never honoured.
        self.SOCKETIO_ORIGINS = [o.strip() for o in (os.environ.get("SOCKETIO_ORIGINS") or "").split(",") if o.strip()]
        # Test deployments only: exports run tests/jobs.py's gated export, which a test releases step
        # by step (so fault tests never depend on the machine's speed). Off unless set; never in production.
        self.TESTING_JOBS = _env_bool("TESTING_JOBS")
        self.PASSWORD_HASH_METHOD = os.environ.get("PASSWORD_HASH_METHOD") or "scrypt"
        self.BOOTSTRAP_SERVE_LOCAL = True
        # Operations (issue 9).
        self.EXPORT_RETENTION_DAYS = _env_int("EXPORT_RETENTION_DAYS", 7)
        self.RETENTION_INTERVAL = _env_int("RETENTION_INTERVAL", 3600)  # seconds between retention runs
        self.METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
        self.LOG_LEVEL = (os.environ.get("LOG_LEVEL") or "INFO").upper()
        self.LOG_FORMAT = (os.environ.get("LOG_FORMAT") or "keyvalue").lower()
        # SQL errors (and so logs) never show parameters: post bodies, password hashes.
        self.SQLALCHEMY_TRACK_MODIFICATIONS = False
        # hide_parameters: SQL errors never put a post body or password hash in a log line.
        # pool_pre_ping: after PostgreSQL drops connections (restart, failover) a pooled one is dead:
        # test it before use, or the next request of each web process answers 500 (found by the fault tests).
        self.SQLALCHEMY_ENGINE_OPTIONS = {"hide_parameters": True, "pool_pre_ping": True}
        self.WTF_CSRF_TIME_LIMIT = None  # a tab left open for hours can still cancel its export
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.REMEMBER_COOKIE_SAMESITE = "Lax"
        # --- security (see README "Security") ---
        https = self.PUBLIC_URL.startswith("https://")
        self.SESSION_COOKIE_HTTPONLY = self.REMEMBER_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SECURE = self.REMEMBER_COOKIE_SECURE = https
        # A login session unused this long ends (its row is deleted); the remember-me cookie lasts as long.
        self.REMEMBER_COOKIE_DURATION = timedelta(days=_env_int("SESSION_MAX_IDLE_DAYS", 30))
        # A little over the import's own 20 MB limit: larger bodies are refused (413) unread.
        self.MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 21 * 1024 * 1024)
        self.LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT") or "10 per 15 minutes"
        self.LOGIN_ADDRESS_RATE_LIMIT = os.environ.get("LOGIN_ADDRESS_RATE_LIMIT") or "100 per 15 minutes"
        self.EXPORT_RATE_LIMIT = os.environ.get("EXPORT_RATE_LIMIT") or "10 per hour"
        self.IMPORT_RATE_LIMIT = os.environ.get("IMPORT_RATE_LIMIT") or "10 per hour"
        self.REGISTER_RATE_LIMIT = os.environ.get("REGISTER_RATE_LIMIT") or "20 per hour"
        self.RESET_RATE_LIMIT = os.environ.get("RESET_RATE_LIMIT") or "10 per hour"
        self.MAX_SOCKETS_PER_USER = _env_int("MAX_SOCKETS_PER_USER", 20)


def normalize_database_url(url: str) -> str:
    """Pick our PostgreSQL driver for plain URLs (SQLAlchemy 2.1 would pick psycopg 3).

    psycopg2 is the driver psycogreen makes cooperative under eventlet; `postgres://` is an alias.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url
