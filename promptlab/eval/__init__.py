"""Evaluation: suites, scorers, statistics and gates.

The names a scorer plugin needs import from here:

```python
from promptlab.eval import Score, ScoreContext, scorer
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Score", "ScoreContext", "get_scorer", "scorer"]

if TYPE_CHECKING:
    from promptlab.eval.scorers.base import Score, ScoreContext, get_scorer, scorer


def __getattr__(name: str) -> Any:
    """Import the scorer API on first use (``promptlab.eval.suite`` stays light)."""
    if name in __all__:
        from promptlab.eval.scorers import base

        return getattr(base, name)
    raise AttributeError(f"module 'promptlab.eval' has no attribute {name!r}")
