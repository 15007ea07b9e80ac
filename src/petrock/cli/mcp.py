"""``petrock mcp``: petrock's generators and checks as MCP tools on stdin/stdout, for coding agents."""

from __future__ import annotations

from petrock.cli import app


@app.command("mcp")
def mcp_server() -> None:
    """Serve petrock's generators and checks as MCP tools on stdin/stdout (for coding agents).

    Tools: new_app, add_feature, generate_command, generate_query,
    generate_worker, list_features, check, upgrade_dry_run. Each works in the
    app its `path` argument names (default: this directory) and answers with the
    JSON of the matching `petrock ... --json` command.

    Example client config: {"command": "petrock", "args": ["mcp"]}
    """
    import signal

    import anyio

    from petrock.mcp import serve_stdio

    signal.signal(signal.SIGINT, signal.SIG_DFL)  # nothing to clean up: Ctrl-C ends it at once
    anyio.run(serve_stdio)
