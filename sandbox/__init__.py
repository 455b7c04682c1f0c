"""A faithful emulator of the Calltouch and Yandex Metrika APIs used by calltouch-metrika.

Run it with ``python -m sandbox --host 127.0.0.1 --port 8765``. Both APIs are served on one port
at their real paths (``/calls-service/...``, ``/report-service/...``, ``/management/v1/...``), plus
test-only control endpoints under ``/_sandbox/`` (see docs/design.md, "Sandbox control API").
"""

from __future__ import annotations
