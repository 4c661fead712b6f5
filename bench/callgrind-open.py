#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""callgrind-open: instructions iomemd executes per OPEN, counted by callgrind (steady under load, unlike time).

    bench/callgrind-open.py IOMEMD [IOMEMD...] [--opens N] [--base M] [--rounds R]

For each daemon binary, R times (alternating binaries): start it under valgrind --tool=callgrind on a fresh
socket, HELLO + CREATE one 4 KiB region, then M (and, in a second daemon, M + N) OPENs one after another, each
reply's fd closed, then SIGTERM. Instructions per OPEN = (Ir(M + N) - Ir(M)) / N: start-up, the CREATE and the
exit cancel out, what is left is the request loop of N OPENs (event loop, read, dispatch, OPEN, reply, send).
The client is this script (its own cost is not counted: callgrind sees only the daemon).
Prints one line per binary and round, then the medians.
"""
import argparse
import array
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

MAGIC, VERSION = 0x444D4F49, 1
HELLO, CREATE, OPEN = 0x0001, 0x0010, 0x0011
REPLY, ERROR = 0x01, 0x02


def string(s):
    b = s.encode()
    return struct.pack('<H', len(b)) + b + b'\0'


def send(sock, opcode, rid, payload):
    sock.sendall(struct.pack('<IBBHIIHH', MAGIC, VERSION, 0, opcode, rid, len(payload), 0, 0) + payload)


def recv(sock):
    data, anc, _, _ = sock.recvmsg(20, socket.CMSG_SPACE(4 * 4))
    fds = array.array('i')
    for level, kind, cdata in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(cdata[: len(cdata) - (len(cdata) % 4)])
    assert len(data) == 20, 'short header'
    _, _, flags, opcode, rid, length, _, _ = struct.unpack('<IBBHIIHH', data)
    payload = b''
    while len(payload) < length:
        payload += sock.recv(length - len(payload))
    for fd in fds:
        os.close(fd)
    if flags & ERROR:
        raise SystemExit('opcode 0x%x id %d: error %d' % (opcode, rid, struct.unpack('<i', payload[:4])[0]))
    return opcode


def run(iomemd, opens):
    """Return: the daemon's total Ir for one session of @opens OPENs."""
    with tempfile.TemporaryDirectory(prefix='iomem-cg.') as tmp:
        sock_path = os.path.join(tmp, 'sock')
        out = os.path.join(tmp, 'callgrind.out')
        daemon = subprocess.Popen(['valgrind', '--tool=callgrind', '--callgrind-out-file=' + out,
                                   iomemd, '--socket', sock_path, '--log-level', 'warning', '--backend', 'memfd'],
                                  stderr=subprocess.DEVNULL)
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            for _ in range(3000):
                try:
                    s.connect(sock_path)
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                raise SystemExit('iomemd did not start under valgrind')
            send(s, HELLO, 1, struct.pack('<HHI', 1, 1, 0))
            recv(s)
            send(s, CREATE, 2, struct.pack('<QIIIHH', 4096, 0, 0, 0o600, 1, 0) + string('cg'))
            recv(s)
            req = struct.pack('<II', 0, 0) + string('cg')
            for i in range(opens):
                send(s, OPEN, 3 + i, req)
                recv(s)
            s.close()
            time.sleep(0.2)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait()
        with open(out) as f:
            text = f.read()
        m = re.search(r'^(?:summary|totals): (\d+)', text, re.M)
        if not m:
            raise SystemExit('no totals in ' + out)
        return int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('iomemd', nargs='+')
    ap.add_argument('--opens', type=int, default=5000)
    ap.add_argument('--base', type=int, default=500)
    ap.add_argument('--rounds', type=int, default=3)
    a = ap.parse_args()
    per = {d: [] for d in a.iomemd}
    for r in range(a.rounds):
        for d in a.iomemd:
            lo = run(d, a.base)
            hi = run(d, a.base + a.opens)
            per[d].append((hi - lo) / a.opens)
            print('round %d %s: Ir(%d)=%d Ir(%d)=%d per OPEN %.1f' % (r + 1, d, a.base, lo, a.base + a.opens, hi,
                                                                      per[d][-1]), flush=True)
    for d in a.iomemd:
        print('median %s: %.1f instructions per OPEN' % (d, statistics.median(per[d])))


if __name__ == '__main__':
    main()
