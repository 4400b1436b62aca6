"""Running the service: bind the socket ourselves (so `--port 0` can say which port it got), then hand
it to uvicorn. SIGINT / SIGTERM stop it gracefully: requests in flight finish, nothing is half-written
(the service never writes to the gallery; the audit log is appended line by line)."""

from __future__ import annotations

import logging
import socket
import sys

from sen_infer.serve.app import create_app
from sen_infer.serve.config import ServeConfig
from sen_infer.serve.errors import AccessError


def bind(host: str, port: int) -> socket.socket:
    """The listening TCP socket on host:port (port 0: any free one), made here so the port can be printed.

    Raises:
        AccessError: the address cannot be bound (in use, not this machine's, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on accepted sockets whose proto is IPPROTO_TCP, and
    # without it a keep-alive client waits ~40 ms per response (Nagle's algorithm meets delayed ACKs)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise AccessError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(config: ServeConfig, log_level: str = "info") -> None:
    """Runs the service until SIGINT or SIGTERM; prints "listening on URL" once it can answer.

    Raises:
        AccessError, SenInferError: the service cannot start (see `create_app`, `bind`).
    """
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)  # opens the engine and gallery before the port opens
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"sen_infer serve: listening on http://{shown}:{port}", flush=True)
    if config.keys is None:
        print("sen_infer serve: no access keys (loopback only); every local user can search", file=sys.stderr,
              flush=True)
    server = uvicorn.Server(uvicorn_config(app, config, log_level))
    server.run(sockets=[sock])


def uvicorn_config(app, config: ServeConfig, log_level: str = "info"):
    """uvicorn's settings for the service: the connection limits of `config.limits`, and proxy headers
    believed only from `config.trusted_proxies` (so the audit names the client behind a reverse proxy, and
    no one else can claim an address by sending X-Forwarded-For).

    Args:
        app: the ASGI app (`create_app`).
        config: the service's settings.
        log_level: uvicorn's log level.

    Returns:
        The `uvicorn.Config`.
    """
    import uvicorn

    from sen_infer.serve.protocol import guarded_protocol

    limits = config.limits
    proxies = list(config.trusted_proxies)
    return uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=10,
                          http=guarded_protocol(limits.header_timeout), timeout_keep_alive=limits.keep_alive,
                          limit_concurrency=limits.max_connections, h11_max_incomplete_event_size=16 * 1024,
                          proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None)
