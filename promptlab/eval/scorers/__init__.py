"""Scorers: the interface, the registry and the built-in kinds.

Every kind is a function registered with :func:`scorer`; :func:`get_scorer` finds one by name
(and registers the built-in kinds on first use). The built-in kinds, grouped by module:

- ``deterministic``: ``exact``, ``contains``, ``not_contains``, ``regex``, ``json_valid``,
  ``field_equals``, ``numeric``;
- ``semantic``: ``semantic_similarity`` (cosine of embeddings);
- ``judge``: ``judge``, ``groundedness``, ``answer_relevance`` (an LLM grades the output);
- ``rag``: ``retrieval_recall``, ``mrr``;
- ``agent``: ``tool_called``, ``steps``.
"""

from promptlab.eval.scorers.base import SCORERS, Score, ScoreContext, get_scorer, scorer

__all__ = ["SCORERS", "Score", "ScoreContext", "get_scorer", "scorer"]
