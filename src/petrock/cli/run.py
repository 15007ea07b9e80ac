"""Commands registered on the petrock app (filled in by their issue)."""
