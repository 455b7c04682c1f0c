"""Airflow's task/trigger log server, on loopback only.

``airflow scheduler`` and ``airflow triggerer`` each start a log server on every interface (the host is
fixed in ``airflow.utils.serve_logs.core``). Under ``make up`` they run with ``--skip-serve-logs`` and
this one process serves the same app (``airflow.utils.serve_logs.log_server``) on 127.0.0.1, at the
port both ``[logging] worker_log_server_port`` and ``trigger_log_server_port`` name; the api-server
finds it through :func:`loopback_hostname` (``[core] hostname_callable``).

    python -m tools.local_airflow.log_server --port 8793
"""

from __future__ import annotations

import argparse


def loopback_hostname() -> str:
    """``[core] hostname_callable`` of the local stack: every process is on this machine's loopback."""
    return "127.0.0.1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(
        "airflow.utils.serve_logs.log_server:get_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
