"""Scorers: the interface, the registry and the built-in kinds.

Every kind is a function registered with :func:`scorer` in the ``SCORERS`` registry; the
built-in modules are declared as entry points of the ``promptlab.scorers`` group and loaded
the way a plugin package's are. The built-in kinds, grouped by module:

- ``deterministic``: ``exact``, ``contains``, ``not_contains``, ``regex``, ``json_valid``,
  ``field_equals``, ``numeric``;
- ``semantic``: ``semantic_similarity`` (cosine of embeddings);
- ``judge``: ``judge``, ``groundedness``, ``answer_relevance`` (an LLM grades the output);
- ``rag``: ``retrieval_recall``, ``mrr``;
- ``agent``: ``tool_called``, ``steps``.
"""

from promptlab.eval.scorers.base import SCORERS, Score, ScoreContext, get_scorer, scorer

__all__ = ["SCORERS", "Score", "ScoreContext", "get_scorer", "scorer"]
