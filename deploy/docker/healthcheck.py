"""Container health check for the mugpos image: a worker (MUGPOS_WORKER_HTTP_PORT set) is asked
for /healthz, anything else is taken for the API and asked for /health on MUGPOS_API_PORT.
`healthcheck.py ready` asks /readyz or /ready instead. Standard library only; exit 0 = healthy."""

from __future__ import annotations

import os
import sys
import urllib.request


def url(ready: bool) -> str:
    worker_port = os.environ.get("MUGPOS_WORKER_HTTP_PORT", "").strip()
    if worker_port:
        return f"http://127.0.0.1:{worker_port}/{'readyz' if ready else 'healthz'}"
    api_port = os.environ.get("MUGPOS_API_PORT", "").strip() or "8000"
    return f"http://127.0.0.1:{api_port}/{'ready' if ready else 'health'}"


def main() -> int:
    target = url(ready=sys.argv[1:] == ["ready"])
    try:
        with urllib.request.urlopen(target, timeout=4) as response:  # noqa: S310 - fixed loopback URL
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"{target}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
