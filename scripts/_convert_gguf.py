"""Convert a GGUF Llama chat model into bfloat16 Hugging Face weights (run in the vLLM venv)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

CHATML_MARKER = "<|im_start|>"


def saved_chat_template(out: Path) -> str:
    """The chat template text saved in out, empty when there is none."""
    jinja = out / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text()
    return str(json.loads((out / "tokenizer_config.json").read_text()).get("chat_template") or "")


def convert(gguf: Path, out: Path) -> None:
    """Dequantize gguf and save the bfloat16 model, tokenizer and chat template into out."""
    for module in ("torch", "transformers", "gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise SystemExit(f"error: {module} is missing in {sys.prefix}: run `make setup`")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if CHATML_MARKER not in (tokenizer.chat_template or ""):
        raise SystemExit(f"error: {gguf.name} has no ChatML chat template")
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = loaded.config
    if not isinstance(config, LlamaConfig):
        raise SystemExit(f"error: expected a llama model, {gguf.name} is {config.model_type!r}")
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.bfloat16().save_pretrained(out)
    tokenizer.save_pretrained(out)
    if CHATML_MARKER not in saved_chat_template(out):
        raise SystemExit(f"error: the tokenizer saved in {out} lost its chat template")
    for file in out.iterdir():
        file.chmod(0o644)


def main() -> None:
    """Parse arguments and convert."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gguf", type=Path, help="the .gguf file")
    parser.add_argument("out", type=Path, help="output directory (must not exist)")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"error: {args.out} already exists")
    convert(args.gguf.resolve(), args.out)


if __name__ == "__main__":
    main()
