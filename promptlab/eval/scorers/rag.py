"""Retrieval scorer kinds: whether the retriever found the documents a case names.

Both kinds compare document ids (``RetrievedDoc.id``, not chunk ids) and count a document
once, at the rank of its first retrieved chunk.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptlab.eval.scorers.base import Score, ScoreContext, scorer


class RecallSettings(BaseModel):
    """Settings of ``retrieval_recall``."""

    model_config = ConfigDict(extra="forbid")

    k: int | None = Field(default=None, ge=1)
    threshold: float = Field(default=1.0, ge=0, le=1)


class MrrSettings(BaseModel):
    """Settings of ``mrr``."""

    model_config = ConfigDict(extra="forbid")

    k: int | None = Field(default=None, ge=1)


def _expected_ids(ctx: ScoreContext) -> list[str]:
    """The expected document ids: a list of strings, or one string."""
    expected: Any = ctx.expected
    ids = [expected] if isinstance(expected, str) else expected
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise TypeError(f"expect.{ctx.spec.expect_key} must be a list of document ids")
    return list(dict.fromkeys(ids))


def _retrieved_ids(ctx: ScoreContext, k: int | None) -> list[str]:
    """Distinct retrieved document ids in rank order, the first ``k`` of them."""
    return list(dict.fromkeys(doc.id for doc in ctx.result.retrieved))[:k]


@scorer("retrieval_recall", settings=RecallSettings, reads="retrieval")
def retrieval_recall(ctx: ScoreContext, settings: RecallSettings) -> Score:
    """The fraction of expected documents among the first ``k`` retrieved (recall@k).

    Settings:
        k: How many distinct retrieved documents count; all of them when unset.
        threshold: Smallest recall that passes (default 1.0: every expected document).

    Expectation:
        A list of document ids (one id may be given as a string).
    """
    expected = _expected_ids(ctx)
    retrieved = _retrieved_ids(ctx, settings.k)
    missed = [i for i in expected if i not in retrieved]
    recall = 1 - len(missed) / len(expected)
    return Score.check(recall >= settings.threshold, recall, f"missed {missed}" if missed else "")


@scorer("mrr", settings=MrrSettings, reads="retrieval")
def mrr(ctx: ScoreContext, settings: MrrSettings) -> Score:
    """The reciprocal rank of the first expected document retrieved (its mean is the MRR).

    The value is ``1 / rank`` of the first relevant document among the distinct retrieved
    documents, 0 when none was retrieved; PASS when one was.

    Settings:
        k: How many distinct retrieved documents count; all of them when unset.

    Expectation:
        A list of relevant document ids (one id may be given as a string).
    """
    expected = set(_expected_ids(ctx))
    retrieved = _retrieved_ids(ctx, settings.k)
    rank = next((n for n, i in enumerate(retrieved, 1) if i in expected), None)
    if rank is None:
        return Score.check(False, 0.0, f"no relevant document among {len(retrieved)} retrieved")
    return Score.check(True, 1 / rank, f"first relevant document at rank {rank}")
