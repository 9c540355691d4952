"""An HTTP proxy in front of moto (or the simulator) for the fleet tests: it counts each
GetExecutionHistory call by execution and by the caller's access key (a shard each), and
refuses sts:AssumeRole of the roles it is told are missing, as AWS does for a role that does not
exist or does not trust the caller."""

from __future__ import annotations

import json
import urllib.parse
from collections import Counter

from aiohttp import ClientSession, web

from simulator.serving import ThreadedServer

DENIED = (
    '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
    "<Code>AccessDenied</Code><Message>User is not authorized to perform: sts:AssumeRole on resource: {role}"
    "</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
)


class AwsProxy(ThreadedServer):
    thread_name = "aws-proxy"

    def __init__(self, upstream: str, missing_roles: set[str] | None = None) -> None:
        super().__init__()
        self.upstream = upstream
        self.missing_roles = missing_roles or set()
        self.history_calls: Counter[tuple[str, str]] = Counter()  # (access key, execution ARN)
        self.assume_role_calls: Counter[str] = Counter()  # by role ARN

    def readers(self) -> dict[str, set[str]]:
        """Execution ARN -> the access keys that read its history."""
        found: dict[str, set[str]] = {}
        for key, arn in self.history_calls:
            found.setdefault(arn, set()).add(key)
        return found

    async def _handle(self, request: web.Request, client: ClientSession) -> web.Response:
        body = await request.read()
        key = request.headers.get("Authorization", "").partition("Credential=")[2].partition("/")[0]
        target = request.headers.get("X-Amz-Target", "")
        if target.endswith(".GetExecutionHistory"):
            self.history_calls[(key, json.loads(body)["executionArn"])] += 1
        if not target and body:
            form = dict(urllib.parse.parse_qsl(body.decode()))
            if form.get("Action") == "AssumeRole":
                role = form.get("RoleArn", "")
                self.assume_role_calls[role] += 1
                if role in self.missing_roles:
                    return web.Response(status=403, text=DENIED.format(role=role), content_type="text/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with client.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            payload = await answer.read()
            kept = {k: v for k, v in answer.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")}  # fmt: skip
            return web.Response(status=answer.status, body=payload, headers=kept)

    async def make_app(self) -> web.Application:
        client = ClientSession(auto_decompress=False)

        async def handle(request: web.Request) -> web.Response:
            return await self._handle(request, client)

        async def close(_: web.Application) -> None:
            await client.close()

        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        app.on_cleanup.append(close)
        return app

    def __enter__(self) -> AwsProxy:
        self.start()
        return self
