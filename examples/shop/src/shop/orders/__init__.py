"""The orders feature: commands, queries, state, pages and a summary worker, wired up in register.py."""
