#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# wire-smoke: start iomemd on a temporary socket and serve a hand-made HELLO + CREATE + OPEN (wire format by hand).
# Usage: tests/integration/wire-smoke.py path/to/iomemd (ctest: integration/wire-smoke)
import array, mmap, os, socket, struct, subprocess, sys, tempfile, time

MAGIC, VERSION = 0x444D4F49, 1
HELLO, CREATE, OPEN, STAT, DELETE = 0x0001, 0x0010, 0x0011, 0x0014, 0x0016
REPLY, ERROR = 0x01, 0x02

def string(s):
    b = s.encode()
    return struct.pack("<H", len(b)) + b + b"\0"

def send(sock, opcode, rid, payload):
    sock.sendall(struct.pack("<IBBHIIHH", MAGIC, VERSION, 0, opcode, rid, len(payload), 0, 0) + payload)

def recv(sock):
    fds = array.array("i")
    data, anc, _, _ = sock.recvmsg(20, socket.CMSG_SPACE(4 * 4))
    for level, kind, cdata in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(cdata[: len(cdata) - (len(cdata) % 4)])
    assert len(data) == 20, "short header"
    magic, version, flags, opcode, rid, length, nfds, _ = struct.unpack("<IBBHIIHH", data)
    assert magic == MAGIC and flags & REPLY
    payload = b""
    while len(payload) < length:
        payload += sock.recv(length - len(payload))
    if flags & ERROR:
        raise SystemExit("opcode 0x%x id %d: error %d" % (opcode, rid, struct.unpack("<i", payload[:4])[0]))
    assert nfds == len(fds), "fds %d vs %d" % (nfds, len(fds))
    return opcode, rid, payload, list(fds)

def main():
    daemon = sys.argv[1]
    fds_before = sorted(os.listdir("/proc/self/fd"))
    d = tempfile.mkdtemp()
    path = os.path.join(d, "x.sock")
    p = subprocess.Popen([daemon, "--socket", path, "--log-level", "debug"])
    try:
        for _ in range(200):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        a.connect(path)
        b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        b.connect(path)
        for s in (a, b):
            send(s, HELLO, 1, struct.pack("<HHI", 1, 1, 0))
            op, rid, pl, _ = recv(s)
            assert (op, rid) == (HELLO, 1)
            print("HELLO ok: version", struct.unpack("<H", pl[:2])[0])
        send(a, CREATE, 2, struct.pack("<QIIIHH", 4096, 0, 0, 0, 0, 0) + string("smoke/region"))
        op, rid, pl, fds = recv(a)
        rid_, size = struct.unpack("<QQ", pl[:16])
        print("CREATE ok: id", rid_, "size", size, "fds", fds)
        send(b, OPEN, 3, struct.pack("<II", 0, 0) + string("smoke/region"))
        op, rid, pl, fds2 = recv(b)
        print("OPEN ok: id", struct.unpack("<Q", pl[:8])[0], "fds", fds2)
        m1 = mmap.mmap(fds[0], 4096)
        m2 = mmap.mmap(fds2[0], 4096)
        m1[0:5] = b"smoke"
        assert m2[0:5] == b"smoke", "not shared"
        print("shared bytes ok")
        m1.close()  # an mmap object holds a dup of its fd
        m2.close()
        send(b, DELETE, 4, string("smoke/region"))
        recv(b)
        # OPEN with WAIT: a timeout, then a wake-up by another client's CREATE (served by the event loop)
        send(b, OPEN, 5, struct.pack("<II", 2, 100) + string("smoke/never"))
        try:
            recv(b)
            raise SystemExit("OPEN WAIT on a missing name did not time out")
        except SystemExit as e:
            assert "error -%d" % 110 in str(e), e  # ETIMEDOUT
        print("OPEN WAIT timeout ok")
        send(b, OPEN, 6, struct.pack("<II", 2, 0xFFFFFFFF) + string("smoke/later"))
        time.sleep(0.1)
        send(a, CREATE, 7, struct.pack("<QIIIHH", 4096, 2, 0, 0, 0, 0) + string("smoke/later"))
        op, rid, pl, fds3 = recv(a)
        op, rid, pl, fds4 = recv(b)
        assert (op, rid) == (OPEN, 6), (op, rid)
        print("OPEN WAIT wake-up ok")
        for fd in fds + fds2 + fds3 + fds4:
            os.close(fd)
        a.close()
        b.close()
    finally:
        p.terminate()
        rc = p.wait(10)
    assert not os.path.exists(path), "socket file left behind"
    os.rmdir(d)
    fds_after = sorted(os.listdir("/proc/self/fd"))
    assert fds_after == fds_before, "fd leak: %s before, %s after" % (fds_before, fds_after)
    print("iomemd exit status", rc)
    return rc

if __name__ == "__main__":
    sys.exit(main())
