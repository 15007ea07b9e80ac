"""Storage backends of the message log, one module each, with the same method names.

``sqlite.py`` is the embedded default; ``postgres.py`` serves ``postgresql://`` URLs.
The interface they implement, and how one is chosen, is in ``core/log.py``.
"""
