# promptlab: `make demo` runs the main job end to end, `make test` runs every check.
.PHONY: setup demo test lint typecheck unit integration bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: setup
	.venv/bin/mypy

unit: setup
	.venv/bin/python -m pytest tests/unit

integration: setup
	.venv/bin/python -m pytest tests/integration

test: lint typecheck
	.venv/bin/python -m pytest

bench: setup
	.venv/bin/python benchmarks/cli_start.py
	.venv/bin/python benchmarks/call_overhead.py
	@echo "eval throughput needs a running vLLM: .venv/bin/python benchmarks/eval_throughput.py --url URL"
	@echo "Ollama vs vLLM on a flow needs both servers: .venv/bin/promptlab bench flows/triage.py -b ollama -b vllm --concurrency 1,4,16 --requests 32"
	@echo "serving overhead needs a running vLLM: .venv/bin/python benchmarks/serve_overhead.py --url URL"

clean:
	rm -rf .promptlab .pytest_cache .mypy_cache .ruff_cache
