"""A TCP client for the network tests, run by the real interpreter: connects, then
waits in recv() and reports how the wait ended, one flushed line per event:
`connected`, (with --send-on-input: `sent` after a line arrives on stdin and 1000
bytes are written), then `eof`, `data` or `error errno=N`.

Usage: client.py HOST PORT [--send-on-input]"""
import socket
import sys


def say(line):
    print(line, flush=True)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.connect((host, port))
    say("connected")
    if "--send-on-input" in sys.argv[3:]:
        sys.stdin.readline()
        sock.sendall(b"x" * 1000)
        say("sent")
    try:
        say("data" if sock.recv(4096) else "eof")
    except OSError as e:
        say(f"error errno={e.errno}")


main()
