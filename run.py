"""Web entry point: the Flask-SocketIO server on eventlet. `python run.py` (honcho: the `web:` line)."""
import eventlet

# First, before anything else imports socket or threading: the whole web process runs on green threads.
eventlet.monkey_patch()

import os  # noqa: E402

from dotenv import load_dotenv  # noqa: E402


def main() -> None:
    """Patch the PostgreSQL driver, build the app, start the sweep, and serve on PORT."""
    from psycogreen.eventlet import patch_psycopg

    patch_psycopg()  # psycopg2 waits cooperatively instead of blocking every socket
    # PyMySQL (mysql+pymysql://) needs nothing: it is pure Python on the sockets monkey_patch greened.
    load_dotenv()
    from app import create_app
    from app.extensions import socketio
    from app.jobs.sweep import sweep_once

    app = create_app(SOCKETIO_ASYNC_MODE=os.environ.get("SOCKETIO_ASYNC_MODE") or "eventlet")

    def sweeper() -> None:
        while True:
            socketio.sleep(app.config["SWEEP_INTERVAL"])
            with app.app_context():
                sweep_once()

    socketio.start_background_task(sweeper)
    port = int(os.environ.get("PORT") or app.config["PORT"])
    host = os.environ.get("HOST", "127.0.0.1")
    print(f"Microblog is serving on http://{host}:{port}", flush=True)
    socketio.run(app, host=host, port=port, max_size=int(os.environ.get("MAX_CONNECTIONS", "10000")),
                 log_output=os.environ.get("ACCESS_LOG", "") == "1")


if __name__ == "__main__":
    main()
