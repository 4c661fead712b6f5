#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bind-watch.py: what a script that waits for iomemd's socket to appear sees when it does (test-it-bind.sh).

    bind-watch.py SOCKET STALE PIDFILE

Run as a uid other than root (the socket file's mode matters to it). As soon as SOCKET exists (and is not STALE, a
stale socket of mode 0777 left there before the start, named by its `stat -c %d:%i`; "-" for none), seen by lstat() in a tight loop, it must
be a socket of mode 0666, and connect() to it must succeed, with no retry but on ECONNREFUSED: the one window iomemd
documents (between its bind() and its listen()). EACCES, or any other error, fails at once. PIDFILE names the daemon
once it is started (read when it exists), so that its death ends the wait. Exit status 0 if so, 1 (with the reason
on stderr) if not. With $BIND_WATCH_READY set, that file is created once the loop runs.
"""
import errno
import os
import socket
import stat
import sys


def dead(pidfile):
    try:
        with open(pidfile) as f:
            pid = f.read().strip()
    except FileNotFoundError:
        return False
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def main():
    path, stale, pidfile = sys.argv[1:4]
    n = 0
    while True:
        try:
            st = os.lstat(path)
            # the stale socket (made 0777 by the test, a mode no iomemd gives its socket), even while it is being
            # unlinked (its ctime then changes under lstat()); its inode number may come back at once (ext4)
            if f"{st.st_dev}:{st.st_ino}" != stale or stat.S_IMODE(st.st_mode) != 0o777:
                break
        except FileNotFoundError:
            pass
        if n == 0 and os.environ.get("BIND_WATCH_READY"):
            open(os.environ["BIND_WATCH_READY"], "w").close()
        n += 1
        if n % 1000 == 0 and dead(pidfile):
            print(f"bind-watch: the daemon ended before {path} appeared", file=sys.stderr)
            return 1
    rc = 0
    if not stat.S_ISSOCK(st.st_mode) or stat.S_IMODE(st.st_mode) != 0o666:
        print(f"bind-watch: {path} appeared as {stat.filemode(st.st_mode)}, not srw-rw-rw-", file=sys.stderr)
        rc = 1
    refused = 0
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            break
        except OSError as e:
            if e.errno != errno.ECONNREFUSED:
                print(f"bind-watch: a connect to {path} as it appeared failed: {e}", file=sys.stderr)
                return 1
            refused += 1
            if refused % 1000 == 0 and dead(pidfile):
                print(f"bind-watch: the daemon ended before it accepted on {path}", file=sys.stderr)
                return 1
        finally:
            s.close()
    print(f"refused {refused}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
