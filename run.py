"""Web entry point: the Flask-SocketIO server on eventlet (or gevent). `python run.py` (honcho: the `web:` line)."""
import os

# SOCKETIO_ASYNC_MODE picks the event loop, so it is read before anything else is imported (a .env
# is read by hand below: python-dotenv imports threading, which must come after the patch).


def _async_mode() -> str:
    """SOCKETIO_ASYNC_MODE from the environment, else from .env, else eventlet (the design's default)."""
    if os.environ.get("SOCKETIO_ASYNC_MODE"):
        return os.environ["SOCKETIO_ASYNC_MODE"]
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".env")) as fh:
            for line in fh:
                key, sep, value = line.strip().partition("=")
                if sep and key.strip().removeprefix("export ").strip() == "SOCKETIO_ASYNC_MODE":
                    return value.strip().strip("'\"") or "eventlet"
    except FileNotFoundError:
        pass
    return "eventlet"


ASYNC_MODE = _async_mode()
# First, before anything else imports socket or threading: the whole web process runs on green threads.
if ASYNC_MODE == "gevent":
    from gevent import monkey

    monkey.patch_all()
else:
    import eventlet
    import eventlet.hubs

    eventlet.monkey_patch()
    from app.hub import RelayFirstHub  # noqa: E402

    # The relay must not queue behind a storm of sockets (app/hub.py). This replaces the hub the
    # patch made, before anything ran on it (it has no timers or listeners yet).
    eventlet.hubs.use_hub(RelayFirstHub)

from dotenv import load_dotenv  # noqa: E402


def main() -> None:
    """Patch the PostgreSQL driver, build the app, start the sweep, and serve on PORT."""
    if ASYNC_MODE == "gevent":
        from psycogreen.gevent import patch_psycopg
    else:
        from psycogreen.eventlet import patch_psycopg

    patch_psycopg()  # psycopg2 waits cooperatively instead of blocking every socket
    # PyMySQL (mysql+pymysql://) needs nothing: it is pure Python on the sockets the patch greened.
    load_dotenv()
    from app import create_app, gc_policy
    from app.extensions import socketio
    from app.jobs.sweep import sweep_forever

    app = create_app(SOCKETIO_ASYNC_MODE=ASYNC_MODE)
    if ASYNC_MODE == "eventlet":
        from app import hub, ping_timers

        manager = socketio.server.manager
        if hasattr(manager, "on_subscribed"):  # with a message queue: the relay's subscription goes first
            manager.on_subscribed = hub.prioritize
        ping_timers.install()  # an idle socket's ping waits on a timer, not in a green thread

    def wait(seconds: float) -> bool:
        socketio.sleep(seconds)
        return False  # the web process sweeps for as long as it serves

    socketio.start_background_task(sweep_forever, app, wait)
    # Full garbage collections would freeze every socket of the process for ~1 s at 10,000 sockets.
    gc_policy.install(app.config["GC_FULL_INTERVAL"], socketio.start_background_task, socketio.sleep)
    port = int(os.environ.get("PORT") or app.config["PORT"])
    host = os.environ.get("HOST", "127.0.0.1")
    # Simultaneous connections: eventlet's WSGI server calls the cap max_size, gevent's a spawn pool.
    max_connections = int(os.environ.get("MAX_CONNECTIONS", "10000"))
    log_output = os.environ.get("ACCESS_LOG", "") == "1"
    loop = ASYNC_MODE
    if ASYNC_MODE == "eventlet":
        import eventlet.hubs  # main() imports eventlet's modules itself (below): `eventlet` is local here

        loop += f", hub {type(eventlet.hubs.get_hub()).__name__}"  # app/hub.py's, unless something ran first
        loop += ", pings on hub timers" if ping_timers.installed() else ", a green thread per ping"
    print(f"Microblog is serving on http://{host}:{port} ({loop})", flush=True)
    if ASYNC_MODE == "gevent":
        socketio.run(app, host=host, port=port, log_output=log_output, spawn=max_connections)
        return
    # What socketio.run does for eventlet, with a listen backlog of our own: its 50 made the kernel
    # drop most of a connect storm's handshakes (ListenOverflows), and each dropped client waited
    # 1 s, 3 s, 7 s... to try again. The kernel caps it at net.core.somaxconn.
    import eventlet.green.socket
    import eventlet.wsgi

    from app.admission import PacedListener

    family, _, _, _, address = eventlet.green.socket.getaddrinfo(host, port)[0]  # as socketio.run: IPv6 too
    listener = eventlet.listen(address, family, backlog=int(os.environ.get("LISTEN_BACKLOG", "4096")))
    eventlet.wsgi.server(PacedListener(listener), app, log_output=log_output, max_size=max_connections)


if __name__ == "__main__":
    main()
