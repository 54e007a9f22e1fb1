"""MCP both ways: lmforge's tools served over stdio (`lmforge agent mcp-server`), used by lmforge's MCP client."""

import sys

import pytest

from lmforge.agent.mcp import MCPTools
from lmforge.agent.sandbox import run_python
from lmforge.agent.tools import ToolError


def test_a_round_trip_through_an_mcp_server_of_lmforge_tools():
    tools = MCPTools(f"{sys.executable} -m lmforge.cli agent mcp-server --tools calculator python")
    try:
        by_name = {t.name: t for t in tools.tools}
        assert sorted(by_name) == ["calculator", "python"]
        assert by_name["calculator"].parameters["required"] == ["expression"]
        assert "arithmetic" in by_name["calculator"].description
        assert by_name["calculator"]({"expression": "(17 + 25) * 3"}) == "126"
        if run_python("pass").ok:  # a system that confines the python tool (else it refuses, and says so)
            assert by_name["python"]({"code": "print(sum(range(5)))"}).strip() == "10"
        with pytest.raises(ToolError, match="ZeroDivisionError"):
            by_name["calculator"]({"expression": "1 / 0"})
        with pytest.raises(ToolError, match="outside the working directory|cannot confine"):
            by_name["python"]({"code": "open('/etc/passwd').read()"})
    finally:
        tools.close()
