#!/usr/bin/env bash
# The demo, end to end on the CPU:
#   1. the support bot answers on the embedded llama.cpp backend (no server needed);
#   2. the triage flow is scored on its eval suite, with gates;
#   3. the same flow file runs on the Ollama API (a running Ollama, else the bundled
#      llama.cpp server started here) and on vLLM where one answers;
#   4. the support bot is promoted to vLLM (launched here) against its Ollama baseline,
#      registered in MLflow, and its lock verified;
#   5. the promoted flow is served (`promptlab serve support_bot --launch`) and answers one
#      request from the openai SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p .promptlab

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
reachable() {
    promptlab backends --json | python -c "import json,sys; b={r['name']: r for r in json.load(sys.stdin)['backends']}; sys.exit(0 if b['$1']['ok'] else 1)"
}
wait_for() {  # URL SECONDS WHAT: poll until URL answers 200
    python - "$@" <<'PY'
import sys, time, urllib.request
url, limit, what = sys.argv[1], float(sys.argv[2]), sys.argv[3]
start = time.monotonic()
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() - start > limit:
        sys.exit(f"{what} did not answer {url} within {limit:.0f}s")
    time.sleep(1)
print(f"({what} ready after {time.monotonic() - start:.0f}s)")
PY
}
free_port() { python -c "from promptlab.promote.launch import free_port; print(free_port())"; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && { wait "$pid" 2>/dev/null || true; }; done; true; }
trap cleanup EXIT

step promptlab list flows
step promptlab backends
step promptlab run flows/support_bot.py -i question="Where is my order NH-10006?"
step promptlab run flows/support_bot.py -i question="My kettle shows error E3, what does it mean?" --json --no-track
step promptlab run flows/triage.py -i text="My kettle shows E3 and smells of burning plastic."

step promptlab eval evals/triage.yaml

if ! reachable ollama; then
    port=$(free_port)
    printf '\n(no Ollama with smollm2:135m and all-minilm: starting the bundled Ollama-API server, the same GGUF through llama.cpp, on port %s)\n' "$port"
    python -m tests.ollama_server --port "$port" --chat-gguf .cache/models/smollm2-135m-instruct-q4_1.gguf \
        --embed-dir .cache/models/all-minilm-l6-v2 > .promptlab/demo-ollama.log 2>&1 &
    pids+=($!)
    export PROMPTLAB_OLLAMA_URL="http://127.0.0.1:$port"
    wait_for "$PROMPTLAB_OLLAMA_URL/api/version" 120 "the Ollama-API server"
fi

for backend in ollama vllm; do
    if reachable "$backend"; then
        step promptlab run flows/support_bot.py --backend "$backend" -i question="Where is my order NH-10006?"
    else
        printf '\n(no %s server is running: skipped here; the promotion below launches its own)\n' "$backend"
    fi
done

step python - <<'PY'
import mlflow
from promptlab.config import load_settings
from promptlab.tracking import open_store

settings = load_settings()
open_store(settings)  # points MLflow at the project's store
experiment = mlflow.get_experiment_by_name(settings.experiment)
traces = mlflow.search_traces(
    locations=[experiment.experiment_id], max_results=5, return_type="list"
)
print(f"latest traces in {settings.resolved_tracking_uri}:")
for t in traces:
    tags = t.info.tags
    spans = ", ".join(s.name for s in t.data.spans)
    print(f"  {t.info.trace_id}  {tags['promptlab.flow']} on {tags['promptlab.backend']}: {spans}")
print(f"browse them: mlflow ui --backend-store-uri {settings.resolved_tracking_uri}")
PY

# Promotion: freeze the support bot, check parity, run its prod gates and the non-inferiority
# test on a vLLM launched here, register it in MLflow (alias staging), write deploy/.
step promptlab promote flows/support_bot.py --to vllm --launch
step promptlab verify support_bot@staging

# Serving: the registered version, on the vLLM servers its lock pins, behind an API key.
port=$(free_port)
printf '\n\033[1m$ promptlab serve support_bot@staging --launch --port %s &\033[0m\n' "$port"
PROMPTLAB_API_KEYS=demo-key promptlab serve support_bot@staging --launch --port "$port" \
    > .promptlab/demo-serve.log 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$port/readyz" 600 "promptlab serve (vLLM starting on the CPU)"
step python - "$port" <<'PY'
import sys

from openai import OpenAI

client = OpenAI(base_url=f"http://127.0.0.1:{sys.argv[1]}/v1", api_key="demo-key")
print("models:", [m.id for m in client.models.list().data])
question = "Where is my order NH-10006?"
reply = client.chat.completions.create(
    model="support_bot", messages=[{"role": "user", "content": question}]
)
print(f"user: {question}\nsupport_bot: {reply.choices[0].message.content}")
print(f"tokens: {reply.usage.prompt_tokens} in, {reply.usage.completion_tokens} out")
PY
printf '\n(server log: .promptlab/demo-serve.log; stopping the server and its vLLM)\n'
