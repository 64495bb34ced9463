"""Holds live sockets open for `keepalive inspect` and `apply` to look at.

Opens a loopback listener for IPv4 and IPv6, connects to each and accepts the
connection, plus a UDP socket and a Unix socket pair. Prints one JSON line naming the
descriptor of each, then "ready". Each "report" line on standard input is answered
with one JSON line of the options every socket holds, read from inside this process;
end of input ends it.

Options: `--pairs N` also opens N more IPv4 loopback connections (both ends held;
named pairN_client and pairN_server, left out of the reports); `--setns PATH` moves the
process into the network namespace at PATH after its sockets are made, as a
container's or `ip netns exec`'s wrapper may.
"""
import ctypes
import json
import os
import resource
import socket
import sys

CLONE_NEWNET = 0x40000000

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


def extra_pairs(count):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    pairs = {"pairs_listener": listener}
    for i in range(count):
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        pairs[f"pair{i}_client"], pairs[f"pair{i}_server"] = client, server
    return pairs


def move_to_namespace(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f"setns {path}")
    os.close(fd)


def main():
    args = sys.argv[1:]
    sockets = open_sockets()
    held = {}
    if "--pairs" in args:
        held = extra_pairs(int(args[args.index("--pairs") + 1]))
    if "--setns" in args:
        move_to_namespace(args[args.index("--setns") + 1])
    layout = {
        name: {"fd": s.fileno(), "local": address(s, "getsockname"), "remote": address(s, "getpeername")}
        for name, s in {**sockets, **held}.items()
    }
    print(json.dumps(layout))
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "report":
            print(json.dumps({name: options(s) for name, s in sockets.items()}), flush=True)


main()
