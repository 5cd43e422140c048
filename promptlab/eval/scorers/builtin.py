"""Imports every built-in scorer module, which registers its kinds."""

from promptlab.eval.scorers import agent, deterministic, judge, rag, semantic

__all__ = ["agent", "deterministic", "judge", "rag", "semantic"]
