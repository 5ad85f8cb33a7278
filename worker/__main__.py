"""Entry point: `python -m worker` builds the app and hands over to RQ."""
from worker.runner import main

if __name__ == "__main__":
    main()
