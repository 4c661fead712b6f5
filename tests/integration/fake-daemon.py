#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""fake-daemon: a peer on a Unix socket that misbehaves in one way, for iomemctl's connect errors.

Usage: fake-daemon.py MODE SOCKET READY_FILE
  version  answer HELLO with -EPROTONOSUPPORT (a daemon of another protocol version)
  garbage  answer with bytes that are not a frame (not iomemd at all)
  close    accept and close at once (a daemon dying during the handshake)
  hello    answer HELLO properly, then close the connection on the next request, unanswered (a daemon that
           dies with the request in flight, again and again)
  gone     answer HELLO properly, then close the connection and stop listening (a daemon that never comes back)
  mute     accept and never answer, never close (a daemon that hangs)
  slow     as hello, but every connection after the first waits $FAKE_DELAY seconds to be accepted (a daemon
           that dies on each request and takes a while to come back)
  escape   answer HELLO properly, then refuse the next request (EOPNOTSUPP) with a message that holds escape
           sequences, a C1 control and UTF-8 (a hostile daemon writing to the user's terminal through iomemctl)
Serves connections until killed; touches READY_FILE once listening.
"""
import os
import signal
import socket
import struct
import sys
import time

MAGIC = 0x444D4F49
EPROTONOSUPPORT = 93
EOPNOTSUPP = 95
# ESC ] 0 ; ... BEL sets a terminal's title, ESC [ 2 J clears it; 0x9b is CSI as one C1 byte; then a UTF-8 e-acute
ESCAPE_MESSAGE = b"\x1b]0;pwned\x07\x1b[2J\x9b31m caf\xc3\xa9"


def frame(flags, opcode, ident, payload):
    return struct.pack("<IBBHIIHH", MAGIC, 1, flags, opcode, ident, len(payload), 0, 0) + payload


def read_request(conn):
    """The next request's (opcode, ident), its payload read and dropped; None if the peer closed first."""
    head = conn.recv(20)
    if len(head) < 20:
        return None
    _, _, _, opcode, ident, length, _, _ = struct.unpack("<IBBHIIHH", head)
    if length:
        conn.recv(length)
    return opcode, ident


def main():
    mode, path, ready = sys.argv[1:4]
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    open(ready, "w").close()
    accepted = 0
    kept = []
    while True:
        if mode == "slow" and accepted > 0:
            time.sleep(float(os.environ.get("FAKE_DELAY", "1")))
        conn, _ = srv.accept()
        accepted += 1
        if mode == "mute":
            kept.append(conn)
            continue
        with conn:
            if mode == "close":
                continue
            req = read_request(conn)
            if req is None:
                continue
            opcode, ident = req
            if mode in ("hello", "gone", "slow", "escape"):
                ver = b"fake"
                payload = struct.pack("<HHIQIHHH", 1, 4, 65536, 64 << 30, 255, 0, 0, len(ver)) + ver + b"\0"
                conn.sendall(frame(0x01, opcode, ident, payload))
                if mode == "gone":
                    srv.close()
                    os.unlink(path)
                    conn.close()
                    while True:
                        signal.pause()
                if mode == "escape":
                    req = read_request(conn)
                    if req is None:
                        continue
                    opcode, ident = req
                    payload = struct.pack("<iH", -EOPNOTSUPP, len(ESCAPE_MESSAGE)) + ESCAPE_MESSAGE + b"\0"
                    conn.sendall(frame(0x03, opcode, ident, payload))
                conn.recv(100)  # the next request: never answered
                continue
            if mode == "version":
                msg = b"this daemon speaks protocol version 7 only"
                payload = struct.pack("<iH", -EPROTONOSUPPORT, len(msg)) + msg + b"\0"
                conn.sendall(frame(0x03, opcode, ident, payload))
            else:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" + b"x" * 40)
            try:
                conn.recv(100)
            except OSError:
                pass


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        os._exit(0)
