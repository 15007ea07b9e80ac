"""Generators compute a Plan of file operations; applying it is the CLI's one step."""
