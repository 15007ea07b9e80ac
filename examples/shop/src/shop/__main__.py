"""``python -m APP``: the app's command line (see cli.py)."""

from .cli import main

main()
