"""petrock: scaffold event-sourced Python web apps."""

__version__ = "0.44.0"
