"""MCP both ways, over stdio: use the tools of any MCP server as agent tools, and serve lmforge's tools to any
MCP client (`lmforge agent mcp-server`).

The agent loop is synchronous and the MCP SDK is asyncio, so a client session lives on its own event-loop thread
for as long as the tools are in use, and each call crosses over with `run_coroutine_threadsafe`.
"""

from __future__ import annotations

import asyncio
import shlex
import threading

from lmforge.agent.tools import Tool, ToolError

CALL_TIMEOUT = 120.0


class MCPTools:
    """The tools of an MCP server started as a subprocess (`command`, split like a shell would), until `close`."""

    def __init__(self, command: str):
        from mcp import StdioServerParameters

        argv = shlex.split(command)
        if not argv:
            raise ValueError("--mcp needs a command that starts an MCP server")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lmforge-mcp", daemon=True)
        self.thread.start()
        self._session = None
        self._opened = threading.Event()
        self._closing = None
        self._task = asyncio.run_coroutine_threadsafe(self._hold(StdioServerParameters(command=argv[0],
                                                                                       args=argv[1:])), self.loop)
        try:
            if not self._opened.wait(CALL_TIMEOUT) or self._session is None:
                if self._task.done():
                    self._task.result()  # raises what went wrong
                raise ConnectionError(f"the MCP server {command!r} did not start within {CALL_TIMEOUT:g} s")
            self.tools = [self._tool(spec) for spec in self._run(self._session.list_tools()).tools]
        except BaseException:
            self.close()
            raise

    async def _hold(self, parameters) -> None:
        """Enter the client, and leave it in the same task (anyio requires it) once `close` asks."""
        from mcp import Client

        self._closing = asyncio.Event()
        try:
            async with Client(parameters) as session:
                self._session = session
                self._opened.set()
                await self._closing.wait()
        finally:
            self._opened.set()

    def _run(self, coroutine, timeout: float = CALL_TIMEOUT):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def _tool(self, spec) -> Tool:
        def call(**arguments) -> str:
            result = self._run(self._session.call_tool(spec.name, arguments))
            text = "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")
            if result.is_error:
                raise ToolError(f"{spec.name}: {text}")
            return text

        return Tool(spec.name, spec.description or "", spec.input_schema, call)

    def close(self) -> None:
        try:
            if self._closing is not None:
                self.loop.call_soon_threadsafe(self._closing.set)
            self._task.cancel() if not self._opened.is_set() else self._task.result(timeout=10)
        except Exception:  # the server already failed: what matters now is that the thread stops
            pass
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


def serve_mcp(tools: list[Tool], name: str = "lmforge") -> None:
    """Serve the tools over stdio until the client hangs up. The SDK builds each tool's schema from the same type
    hints and checks the arguments against it; a ToolError becomes an MCP error result."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name, log_level="WARNING")
    for tool in tools:
        server.add_tool(_reporting(tool.function), name=tool.name, description=tool.description)
    server.run("stdio")


def _reporting(function):
    """The function with lmforge's ToolError raised as the SDK's, whose message reaches the client (others are
    reported as a bare "Error executing tool")."""
    import functools

    from mcp.server.mcpserver.exceptions import ToolError as MCPToolError

    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ToolError as err:
            raise MCPToolError(str(err)) from None

    return call
