"""``vllm-serve.sh``: the exact ``vllm serve`` commands, one server per model, on one machine."""

from __future__ import annotations

import shlex

from promptlab.promote.deploy.plan import ROOT_FROM_FOLDER, Plan, Server, listen_argv


def serve_argv(server: Server) -> list[str]:
    """The whole command line of one server on this machine (paths relative to the root)."""
    gpus = ",".join(map(str, server.gpus))
    return [
        f"CUDA_VISIBLE_DEVICES={gpus}",
        "vllm",
        "serve",
        *server.args.argv(),
        *listen_argv(server.host_port),
    ]


def render_script(plan: Plan) -> str:
    """A bash script that starts every server of the plan and stops them all together."""
    lines = [
        "#!/usr/bin/env bash",
        plan.header("The vLLM servers").rstrip("\n"),
        "# vLLM reads the API key from VLLM_API_KEY (as it would --api-key), which keeps the key",
        "# off the command line, where `ps` would show it.",
        "set -euo pipefail",
        f'cd "$(dirname "$0")/{ROOT_FROM_FOLDER}"  # local model paths are relative to the root',
        ': "${VLLM_API_KEY:?set VLLM_API_KEY to the key that clients must send}"',
        "export VLLM_API_KEY",
        "trap 'kill 0' EXIT  # stop every server when one stops or on Ctrl-C",
        "",
    ]
    for server in plan.servers:
        args = server.args
        lines += [
            f"# {args.logical}: served as '{args.served_model_name}' at "
            f"http://localhost:{server.host_port}/v1 on GPU {','.join(map(str, server.gpus))}",
            f"{shlex.join(serve_argv(server))} &",
            "",
        ]
    lines.append("wait -n")
    return "\n".join(lines) + "\n"
