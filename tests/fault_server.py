"""An OpenAI-compatible chat server that fails on purpose, for the reliability tests.

It answers ``POST /v1/chat/completions`` with ``echo: <last user message>``, except that a
seeded random share of requests get a 503 with Retry-After, or a connection reset, and any
request whose message contains a poison word always gets a 500. ``GET /counts`` returns how
many requests each message text received; ``GET /health`` answers 200.

    python tests/fault_server.py --port 8123 --p503 0.2 --reset 0.05 --poison POISON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter


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

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                fields = (h.partition(":") for h in lines[1:])
                headers = {k.lower(): v.strip() for k, _, v in fields}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if not await self.answer(method, path, body, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def answer(
        self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        """Write one answer; False when the connection was cut on purpose."""
        if method == "GET" and path == "/health":
            self.send(writer, 200, b'{"status":"ok"}')
        elif method == "GET" and path == "/counts":
            self.send(writer, 200, json.dumps(self.counts).encode())
        elif method == "GET" and path.endswith("/models"):
            self.send(writer, 200, b'{"object":"list","data":[{"id":"faulty","object":"model"}]}')
        elif method == "POST" and path.endswith("/chat/completions"):
            request = json.loads(body)
            text = str(request["messages"][-1]["content"])
            self.counts[text] += 1
            roll = self.random.random()
            if self.poison and self.poison in text:
                self.send(writer, 500, b'{"error":{"message":"poisoned input"}}')
            elif roll < self.reset:
                writer.transport.abort()
                return False
            elif roll < self.reset + self.p503:
                self.send(writer, 503, b'{"error":{"message":"overloaded"}}', retry_after="0")
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
        writer: asyncio.StreamWriter, status: int, body: bytes, retry_after: str | None = None
    ) -> None:
        reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Error")
        head = [
            f"HTTP/1.1 {status} {reason}",
            "content-type: application/json",
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
    args = parser.parse_args()
    server = FaultServer(args.p503, args.reset, args.poison, args.seed, args.delay)
    async with await asyncio.start_server(server.handle, "127.0.0.1", args.port, backlog=1024):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
