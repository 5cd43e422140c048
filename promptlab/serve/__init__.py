"""``promptlab serve``: flows as an OpenAI-compatible HTTP service (imported only when serving).

The modules, in the order a request meets them: ``guard`` (API keys, body size, bounded
concurrency, metrics and the access log, as one ASGI layer), ``openai_compat`` (the OpenAI
chat completions API over flows) or ``flows_api`` (typed routes with an OpenAPI schema),
``service`` (runs a flow with a timeout, streaming tokens as they arrive). ``target``
decides what to serve; ``app`` puts it together; ``metrics`` and ``logs`` are what the
operator sees.
"""
