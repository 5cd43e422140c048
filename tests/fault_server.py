"""An OpenAI-compatible chat server that fails on purpose, for the reliability tests.

It answers ``POST /v1/chat/completions`` with ``echo: <last user message>``, except that a
seeded random share of requests get a 503 with Retry-After, or a connection reset, and any
request whose message contains a poison word always gets a 500. A message can also ask for
one misbehaviour with a ``MODE:`` word: ``MODE:html`` (a 200 with an HTML page),
``MODE:truncated`` (a 200 with half a JSON body), ``MODE:badsse`` (a stream with a line that
is not JSON), ``MODE:retry=VALUE`` (a 429 with that Retry-After), ``MODE:slow=SECONDS`` (the
answer after that long, unless the client leaves first), ``MODE:tool=NAME`` (an agent's JSON
call of tool NAME with no arguments), ``MODE:flaky=N`` (a 503 with ``Retry-After: 1`` for the
first N requests of that text, then the agent's final answer ``done``). Streamed requests
(``"stream": true``) get one SSE chunk per word, ``--chunk-delay`` apart.

``GET /counts`` returns how many requests each message text received, ``GET /stats`` how many
requests are in progress and how many clients left before their answer; ``GET /health``
answers 200.

    python tests/fault_server.py --port 8123 --p503 0.2 --reset 0.05 --poison POISON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from typing import Any


class FaultServer:
    def __init__(
        self, p503: float, reset: float, poison: str | None, seed: int, delay: float = 0.0
    ) -> None:
        self.delay = delay
        self.p503 = p503
        self.reset = reset
        self.poison = poison
        self.random = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.active = 0
        self.left = 0
        self.chunk_delay = 0.0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                fields = (h.partition(":") for h in lines[1:])
                headers = {k.lower(): v.strip() for k, _, v in fields}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if not await self.answer(method, path, body, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def misbehave(
        self,
        mode: str,
        request: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """One answer of the kind ``mode`` names; False when the connection is done."""
        name, _, value = mode.partition("=")
        if name == "html":
            self.send(writer, 200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        elif name == "truncated":
            body = completion(request["model"], "cut short")
            self.send(writer, 200, body[: len(body) // 2])
        elif name == "badsse":
            self.start_stream(writer)
            writer.write(b"data: {not json at all\n\n")
            writer.write(b"data: [DONE]\n\n")
        elif name == "retry":
            body = b'{"error":{"message":"slow down"}}'
            self.send(writer, 429, body, retry_after=value)
        elif name == "slow":
            try:  # a client that leaves shows as the end of its stream
                await asyncio.wait_for(reader.read(1), float(value))
                self.left += 1
                return False
            except TimeoutError:
                self.send(writer, 200, completion(request["model"], "slow but sure"))
        elif name == "tool":
            call = json.dumps({"tool": value, "arguments": {}})
            self.send(writer, 200, completion(request["model"], call))
        elif name == "flaky":
            text = str(request["messages"][-1]["content"])
            if self.counts[text] <= int(value):
                self.send(writer, 503, b'{"error":{"message":"overloaded"}}', retry_after="1")
            else:
                final = json.dumps({"tool": "final_answer", "answer": "done"})
                self.send(writer, 200, completion(request["model"], final))
        elif name == "stream":
            await self.stream(writer, request["model"], " ".join(["word"] * int(value or 20)))
        await writer.drain()
        return name not in ("badsse", "stream")  # a stream ends with its connection

    @staticmethod
    def start_stream(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        )

    async def stream(self, writer: asyncio.StreamWriter, model: str, text: str) -> None:
        """The answer as server-sent events, one word a chunk, then [DONE] (and close)."""
        self.start_stream(writer)
        for word in text.split(" "):
            chunk = {
                "id": "chatcmpl-fault",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}],
            }
            writer.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            await writer.drain()
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        end = {
            "id": "chatcmpl-fault",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
        writer.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")
        await writer.drain()

    async def answer(
        self,
        method: str,
        path: str,
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Write one answer; False when the connection was cut on purpose."""
        if method == "GET" and path == "/health":
            self.send(writer, 200, b'{"status":"ok"}')
        elif method == "GET" and path == "/counts":
            self.send(writer, 200, json.dumps(self.counts).encode())
        elif method == "GET" and path == "/stats":
            self.send(writer, 200, json.dumps({"active": self.active, "left": self.left}).encode())
        elif method == "GET" and path.endswith("/models"):
            self.send(writer, 200, b'{"object":"list","data":[{"id":"faulty","object":"model"}]}')
        elif method == "POST" and path.endswith("/chat/completions"):
            request = json.loads(body)
            text = str(request["messages"][-1]["content"])
            self.counts[text] += 1
            roll = self.random.random()
            mode = next((w[5:] for w in text.split() if w.startswith("MODE:")), "")
            if mode:
                self.active += 1
                try:
                    return await self.misbehave(mode, request, reader, writer)
                finally:
                    self.active -= 1
            if self.poison and self.poison in text:
                self.send(writer, 500, b'{"error":{"message":"poisoned input"}}')
            elif roll < self.reset:
                writer.transport.abort()
                return False
            elif roll < self.reset + self.p503:
                self.send(writer, 503, b'{"error":{"message":"overloaded"}}', retry_after="0")
            elif request.get("stream"):
                await self.stream(writer, request["model"], f"echo: {text}")
                return False  # a stream ends with its connection
            else:
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.send(writer, 200, completion(request["model"], f"echo: {text}"))
        else:
            self.send(writer, 404, b'{"error":{"message":"no such route"}}')
        await writer.drain()
        return True

    @staticmethod
    def send(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        retry_after: str | None = None,
    ) -> None:
        reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Error")
        head = [
            f"HTTP/1.1 {status} {reason}",
            f"content-type: {content_type}",
            f"content-length: {len(body)}",
        ]
        if retry_after is not None:
            head.append(f"retry-after: {retry_after}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)


def completion(model: str, text: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-fault",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
    ).encode()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--p503", type=float, default=0.0)
    parser.add_argument("--reset", type=float, default=0.0)
    parser.add_argument("--poison")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    args = parser.parse_args()
    server = FaultServer(args.p503, args.reset, args.poison, args.seed, args.delay)
    server.chunk_delay = args.chunk_delay
    async with await asyncio.start_server(server.handle, "127.0.0.1", args.port, backlog=1024):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
