"""Keep a single-node torchrun's listeners on 127.0.0.1.

torch's ``TCPStore`` server listens on all interfaces even when it is told ``localhost``
(upstream pytorch#173909), so a plain ``torchrun --standalone`` exposes its rendezvous
store and the store the ranks share to the network. :func:`install`, called by the agent
entry point (:mod:`orchestrator.torchrun.agent`) before torchrun's ``main``, changes one thing in
the agent process: every store *server* it creates is handed a socket that is already
bound to ``127.0.0.1`` (``TCPStore(master_listen_fd=...)``), so the store never binds a
socket of its own. Clients (the ranks) connect to ``127.0.0.1`` because
:mod:`orchestrator.torchrun.launch` passes ``--local-addr 127.0.0.1``; it also keeps gloo and NCCL on
the loopback interface (``GLOO_SOCKET_IFNAME=lo``) and the ranks on the agent's store
(``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=0``), so no rank opens a store server either.

Only for single-node launches: ranks on other machines could not reach a loopback store.
Importing this module changes nothing; :func:`install` does.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

__all__ = ["LOOPBACK", "bind_loopback", "install", "loopback_store"]

LOOPBACK = "127.0.0.1"
_BACKLOG = 2048


def bind_loopback(port: int = 0) -> socket.socket:
    """A TCP socket bound to ``127.0.0.1:port`` (0: a free port chosen by the kernel) and listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def loopback_store(
    host_name: str,
    port: int,
    world_size: int | None = None,
    is_master: bool = False,
    timeout: timedelta = timedelta(seconds=300),
    wait_for_workers: bool = True,
    multi_tenant: bool = False,
    master_listen_fd: int | None = None,
    use_libuv: bool = True,
) -> Any:
    """A ``TCPStore`` whose server (``is_master``) listens on 127.0.0.1 only; clients are unchanged.

    Same arguments as :class:`torch.distributed.TCPStore`. The server gets a socket already
    bound to ``127.0.0.1:port`` and owns it from then on.
    """
    from torch.distributed import TCPStore

    if not is_master or master_listen_fd is not None:
        return TCPStore(host_name, port, world_size, is_master, timeout, wait_for_workers,
                        multi_tenant, master_listen_fd, use_libuv)
    sock = bind_loopback(port)
    try:
        store = TCPStore(LOOPBACK, sock.getsockname()[1], world_size, True, timeout, wait_for_workers,
                         multi_tenant, sock.fileno(), use_libuv)
    except BaseException:
        sock.close()
        raise
    sock.detach()  # the store serves on this descriptor now
    return store


def install() -> None:
    """Make the elastic agent of this process create its store servers with :func:`loopback_store`.

    The two places torch 2.x creates a store server in the agent: the c10d rendezvous
    backend (``--standalone`` uses ``localhost:0``) and the store shared with the ranks.
    """
    from torch.distributed.elastic.rendezvous import (
        c10d_rendezvous_backend,
        dynamic_rendezvous,
    )

    c10d_rendezvous_backend.TCPStore = loopback_store  # type: ignore[attr-defined,misc,assignment]

    def create_tcp_store_server(self: Any, master_addr: str, master_port: int) -> Any:
        return loopback_store(master_addr, master_port, is_master=True, multi_tenant=True)

    handler = dynamic_rendezvous.DynamicRendezvousHandler
    handler._create_tcp_store_server = create_tcp_store_server  # type: ignore[method-assign]
