"""moto's server as a subprocess on 127.0.0.1 with its Step Functions interpreter switched on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not gone within ten seconds."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """Starts moto's server (with AWS's history paging, see tests/moto_aws.py), waits until it
    answers, enables the interpreter; stops on exit."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoServer:
        env = dict(os.environ, MOTO_PORT=str(self.port))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.moto_aws", "127.0.0.1", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self._post("/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto did not start on port {self.port}") from None
                time.sleep(0.1)
        return self

    def _post(self, path: str, body: object) -> None:
        request = urllib.request.Request(
            self.endpoint + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def stop(self) -> None:
        if self._process is not None:
            if self._process.stdin is not None:
                self._process.stdin.close()
            stop_process(self._process)
            self._process = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
