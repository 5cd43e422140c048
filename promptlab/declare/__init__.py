"""What a user declares: prompts, retrievers, agents and the flows composing them."""

from promptlab.declare.agent import Agent, Tool
from promptlab.declare.flow import Flow, Step
from promptlab.declare.mcp import MCPServer
from promptlab.declare.prompt import Prompt
from promptlab.declare.retriever import Retriever
from promptlab.sampling import Sampling

__all__ = ["Agent", "Flow", "MCPServer", "Prompt", "Retriever", "Sampling", "Step", "Tool"]
