"""Semantic scorer kinds: closeness of meaning, measured with an embedding model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from promptlab.eval.scorers.base import Score, ScoreContext, scorer
from promptlab.eval.stats import cosine
from promptlab.text import as_text


class SimilaritySettings(BaseModel):
    """Settings of ``semantic_similarity``."""

    model_config = ConfigDict(extra="forbid")

    field: str | None = None
    threshold: float = Field(default=0.7, ge=-1, le=1)
    model: str = "embed"
    backend: str | None = None


@scorer("semantic_similarity", settings=SimilaritySettings)
async def semantic_similarity(ctx: ScoreContext, settings: SimilaritySettings) -> Score:
    """How close in meaning the output is to a reference text: the cosine of their embeddings.

    The value is the cosine similarity; PASS if it reaches ``threshold``. Cosines are only
    comparable within one embedding model, so tune the threshold for the model you use.

    Settings:
        field: Dotted path into the output; the whole output when unset.
        threshold: Smallest cosine that passes (default 0.7).
        model: Logical embedding model (default ``embed``).
        backend: Backend to embed with; the eval run's backend when unset.

    Expectation:
        The reference text.
    """
    answer, reference = as_text(ctx.value_at(settings.field)), as_text(ctx.expected)
    vectors = await ctx.models.embed(
        [answer, reference], model=settings.model, backend=settings.backend
    )
    if len(vectors) != 2:
        raise ValueError(f"embedding model returned {len(vectors)} vectors for 2 texts")
    similarity = cosine(vectors[0], vectors[1])
    detail = f"cosine {similarity:.3f} (threshold {settings.threshold:g}, model {settings.model})"
    return Score.check(similarity >= settings.threshold, similarity, detail)
