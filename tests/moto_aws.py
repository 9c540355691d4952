"""moto's server with AWS's GetExecutionHistory paging put in front of its handler:
`python -m tests.moto_aws HOST PORT`. tests/moto_server.py starts it as a subprocess."""

from __future__ import annotations

import logging
import sys

from moto.server import ThreadedMotoServer

from exporter.demo.emulator import patch_moto_history_paging


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    patch_moto_history_paging()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    print(f"ready {host}:{port}", flush=True)
    sys.stdin.read()  # until the parent closes our standard input (or dies)
    server.stop()


if __name__ == "__main__":
    main()
