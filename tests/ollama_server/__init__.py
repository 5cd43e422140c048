"""Test fixture: a small server that speaks Ollama's REST API (not product code).

It serves a GGUF chat model through llama-cpp-python (the engine Ollama embeds) and a
sentence-transformers embedding model, so promptlab's `ollama` backend can be tested
against a real server where no Ollama binary can be installed.

Run it with ``python -m tests.ollama_server --help``; start it from tests with
:func:`tests.ollama_server.launch.running_server`.
"""
