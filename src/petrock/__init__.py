"""petrock: scaffold event-sourced Python web apps."""

__version__ = "0.46.0"
