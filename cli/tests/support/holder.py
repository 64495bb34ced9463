"""Holds live sockets open for `keepalive inspect` and `apply` to look at.

Opens a loopback listener for IPv4 and IPv6, connects to each and accepts the
connection, plus a UDP socket and a Unix socket pair. Prints one JSON line naming the
descriptor of each, then "ready". Each "report" line on standard input is answered
with one JSON line of the options every socket holds, read from inside this process;
end of input ends it.
"""
import json
import socket
import sys

TCP_OPTIONS = {
    "idle_s": socket.TCP_KEEPIDLE,
    "interval_s": socket.TCP_KEEPINTVL,
    "count": socket.TCP_KEEPCNT,
    "user_timeout_ms": socket.TCP_USER_TIMEOUT,
}


def connected_pair(family, address):
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((address, 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname()[:2])
    server, _ = listener.accept()
    return listener, client, server


def open_sockets():
    sockets = {}
    for suffix, family, address in [("4", socket.AF_INET, "127.0.0.1"), ("6", socket.AF_INET6, "::1")]:
        listener, client, server = connected_pair(family, address)
        sockets.update({"listen" + suffix: listener, "client" + suffix: client, "server" + suffix: server})
    sockets["udp4"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets["unix_a"], sockets["unix_b"] = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return sockets


def options(sock):
    report = {"keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)}
    if sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6):
        for name, option in TCP_OPTIONS.items():
            report[name] = sock.getsockopt(socket.IPPROTO_TCP, option)
    return report


def address(sock, which):
    """ip:port as Rust prints a socket address, or None where there is none."""
    try:
        host, port = getattr(sock, which)()[:2]
    except (OSError, ValueError):
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def main():
    sockets = open_sockets()
    layout = {
        name: {"fd": s.fileno(), "local": address(s, "getsockname"), "remote": address(s, "getpeername")}
        for name, s in sockets.items()
    }
    print(json.dumps(layout))
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "report":
            print(json.dumps({name: options(s) for name, s in sockets.items()}), flush=True)


main()
