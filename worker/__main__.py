"""Entry point: `python -m worker` builds the app and hands over to RQ."""

if __name__ == "__main__":
    from worker.lean import leave_out_unused_clients

    leave_out_unused_clients()  # before the first `import socketio` (worker/lean.py)
    from worker.runner import main

    main()
