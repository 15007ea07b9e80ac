"""shop: an event-sourced web app made with petrock."""
