#!/usr/bin/env bash
# The demo: the support bot answers a customer on the embedded llama.cpp backend (no server
# needed), the triage flow is scored on its eval suite with gates, the same flow file runs on
# Ollama and vLLM wherever they answer, and every run lands in the project's MLflow store.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step promptlab list flows
step promptlab backends
step promptlab run flows/support_bot.py -i question="Where is my order NH-10006?"
step promptlab run flows/support_bot.py -i question="My kettle shows error E3, what does it mean?" --json --no-track
step promptlab run flows/triage.py -i text="My kettle shows E3 and smells of burning plastic."

step promptlab eval evals/triage.yaml

for backend in ollama vllm; do
    if promptlab backends --json | python -c "import json,sys; b={r['name']: r for r in json.load(sys.stdin)['backends']}; sys.exit(0 if b['$backend']['ok'] else 1)"; then
        step promptlab run flows/support_bot.py --backend "$backend" -i question="Where is my order NH-10006?"
    else
        printf '\n(%s is not reachable: skipped; start it and run `make demo` again)\n' "$backend"
    fi
done

step python - <<'PY'
import mlflow
from promptlab.config import load_settings
from promptlab.tracking import open_store

settings = load_settings()
experiment_id = open_store(settings)
traces = mlflow.search_traces(locations=[experiment_id], max_results=5, return_type="list")
print(f"latest traces in {settings.resolved_tracking_uri}:")
for t in traces:
    tags = t.info.tags
    spans = ", ".join(s.name for s in t.data.spans)
    print(f"  {t.info.trace_id}  {tags['promptlab.flow']} on {tags['promptlab.backend']}: {spans}")
print(f"browse them: mlflow ui --backend-store-uri {settings.resolved_tracking_uri}")
PY
