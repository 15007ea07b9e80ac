"""``python -m petrock``."""

from petrock.cli import main

main()
