"""Ctrl-C at a terminal, for the cgroup mode signal tests.

ctrl_c.py RECORD PRESSES -- COMMAND...

Starts COMMAND in a new session whose controlling terminal is a new pseudo-terminal
(the child of pty.fork is the session leader and its process group the terminal's
foreground group, as a shell's job would be). Once the file RECORD holds a line
'ready', types the interrupt character (Ctrl-C, written to the master side) PRESSES
times, 0.3 s apart; then sends SIGINT, and after 0.3 s SIGTERM, to COMMAND's process
itself with kill(2), as a user would from another terminal. Prints one line of JSON:
{"ready": bool, "pid": COMMAND's pid, "exit": its exit code (negative: killed by that
signal), "terminal": what the terminal showed}.
"""

import json
import os
import pty
import select
import signal
import sys
import time


def main():
    record, presses = sys.argv[1], int(sys.argv[2])
    assert sys.argv[3] == "--", "usage: ctrl_c.py RECORD PRESSES -- COMMAND..."
    command = sys.argv[4:]
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    shown = bytearray()

    def drain(seconds):
        """Reads what the terminal shows for `seconds`, so that it never blocks."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([master], [], [], left)
            if not readable:
                return
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: every slave descriptor is closed
                time.sleep(left)
                return
            if not data:
                return
            shown.extend(data)

    def recorded(text):
        try:
            with open(record) as f:
                return text in f.read()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 20
    while not (ready := recorded("ready")) and time.monotonic() < deadline:
        drain(0.02)
    if ready:
        for _ in range(presses):
            os.write(master, b"\x03")
            drain(0.3)
        os.kill(pid, signal.SIGINT)
        drain(0.3)
        os.kill(pid, signal.SIGTERM)
    else:
        os.kill(pid, signal.SIGKILL)
    status = None
    deadline = time.monotonic() + 20
    while status is None and time.monotonic() < deadline:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
        else:
            drain(0.05)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(json.dumps({
        "ready": ready,
        "pid": pid,
        "exit": status,
        "terminal": shown.decode(errors="replace"),
    }))


main()
