"""Running the model server: one uvicorn worker in this process, on a socket bound first (a taken port is one sentence).

One worker, because the routing (and the canary the control API opened) and the metrics live in the process: more
workers would each follow the alias alone, keep their own canary and count apart.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import logging.config
import socket
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from conveyor.serving.app import serving_app
from conveyor.serving.server import WORKERS, ModelServer

# How long requests in flight may take to finish once SIGTERM arrives.
GRACEFUL_SHUTDOWN_S = 10
_LOG = logging.getLogger("conveyor.serving")


class ServingError(RuntimeError):
    """The server cannot start; the message is one sentence."""


def bound_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port for the server; ServingError naming the address when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio turns Nagle's algorithm off only on connections of sockets that do, and without
    # TCP_NODELAY every answer waits ~40 ms for the client's delayed ACK.
    bound = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        bound.bind((host, port))
    except OSError as error:
        bound.close()
        raise ServingError(
            f"The model server cannot listen on {host}:{port} ({error.strerror or error}); choose another port with "
            "--port or CONVEYOR_SERVING_PORT."
        ) from None
    return bound


def _log_config() -> dict[str, Any]:
    """The logging of uvicorn, with Conveyor's serving logger on its handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["conveyor"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def http_server(server: ModelServer) -> uvicorn.Server:
    """The uvicorn server of a model server: one worker, no access log (the metrics count requests)."""
    config = uvicorn.Config(
        serving_app(server),
        workers=WORKERS,
        lifespan="on",
        access_log=False,
        log_config=None,  # the process's logging is its owner's: `serve` sets it up, tests keep pytest's
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return uvicorn.Server(config)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(server: ModelServer, listening: socket.socket) -> None:
    """Serve on a bound socket until SIGTERM or SIGINT; requests in flight then finish (up to GRACEFUL_SHUTDOWN_S)."""
    logging.config.dictConfig(_log_config())
    host, port = listening.getsockname()[:2]
    if not _loopback(host) and server.settings.serving_control_token is None:
        _LOG.warning("The control API on %s:%d takes no token: set CONVEYOR_SERVING_CONTROL_TOKEN.", host, port)
    http_server(server).run(sockets=[listening])
