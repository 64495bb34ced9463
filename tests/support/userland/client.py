"""Run inside the other userlands' roots (tests/userland.rs) by their own python3:
connects to a listener of its own on 127.0.0.1, reads the client socket's keepalive
options back with getsockopt, and prints them in the probe's format, then which
library was preloaded:

    kind=tcp4 keepalive=1 idle=31 intvl=7 cnt=4 user_timeout=0
    preload=/usr/local/lib/libkeepalive.so

Written for Python 3.9 (Debian 11) and later; uses nothing outside the standard
library's socket and os modules."""

import os
import socket

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.bind(("127.0.0.1", 0))
listener.listen(1)
client = socket.create_connection(listener.getsockname())
options = [
    ("keepalive", socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    ("idle", socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    ("intvl", socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    ("cnt", socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    ("user_timeout", socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
]
fields = " ".join(f"{name}={client.getsockopt(level, option)}" for name, level, option in options)
print(f"kind=tcp4 {fields}")
print(f"preload={os.environ.get('LD_PRELOAD', '')}")
