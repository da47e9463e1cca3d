"""``python -m waferscope.hub ...``: the hub's commands without the umbrella CLI (used to start
ingest worker processes)."""

from waferscope.hub.cli import app

if __name__ == "__main__":
    app()
