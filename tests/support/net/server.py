"""A TCP server for the network tests: accepts connections on every address given,
reads whatever the client sends and never answers, so each client ends up waiting
in recv() on an idle connection. Prints one line per event, flushed at once:
`listening`, `accepted PORT`, `received PORT` for a connection's first data, and when an accepted connection ends
`closed PORT errno=N` (errno=0 for an orderly close by the peer).

Usage: server.py HOST:PORT [HOST:PORT ...]   (IPv6 hosts in brackets)."""
import selectors
import socket
import sys


def listen(spec):
    host, port = spec.rsplit(":", 1)
    family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host.strip("[]"), int(port)))
    listener.listen()
    return listener


def say(line):
    print(line, flush=True)


def main():
    selector = selectors.DefaultSelector()
    for spec in sys.argv[1:]:
        selector.register(listen(spec), selectors.EVENT_READ, "listener")
    say("listening")
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if key.data == "listener":
                conn, _ = sock.accept()
                port = sock.getsockname()[1]
                selector.register(conn, selectors.EVENT_READ, [port, False])
                say(f"accepted {port}")
                continue
            try:
                data = sock.recv(65536)
                error = 0
            except OSError as e:
                data, error = b"", e.errno
            port, seen = key.data
            if data and not seen:
                key.data[1] = True
                say(f"received {port}")
            if not data:
                selector.unregister(sock)
                sock.close()
                say(f"closed {port} errno={error}")


main()
