#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""gen-seeds: write the seed corpora of the fuzz targets (corpus-fuzz-proto/, corpus-fuzz-conn/) from scratch."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = 0x444D4F49
OPS = dict(HELLO=1, PING=2, STATUS=3, METRICS=4, CREATE=0x10, OPEN=0x11, RESIZE=0x12, SEAL=0x13, STAT=0x14, LIST=0x15,
           DELETE=0x16, CHMOD=0x100, CHOWN=0x101, QUOTA=0x102, REGISTER=0x200,
           WATCH=0x400, UNWATCH=0x401, PUBLISH=0x402, OPENV=0x403, STATV=0x404, EVENT=0x302, OVERFLOW=0x301)
# index into fuzz_opcodes[] of fuzz-conn.c
OPIDX = dict(HELLO=0, PING=1, STATUS=2, CREATE=3, OPEN=4, RESIZE=5, SEAL=6, STAT=7, LIST=8, DELETE=9, CHMOD=10,
             REGISTER=11, CHOWN=15, QUOTA=16, METRICS=19, WATCH=20, UNWATCH=21, PUBLISH=22, OPENV=23, STATV=24, EVENT=25)


def s(name):
    b = name.encode()
    return struct.pack('<H', len(b)) + b + b'\0'


def hdr(op, length, nfds=0, flags=0, version=1, rid=1):
    return struct.pack('<IBBHIIHH', MAGIC, version, flags, op, rid, length, nfds, 0)


PAYLOADS = {
    'HELLO': struct.pack('<HHI', 1, 1, 0),
    'HELLO_order': struct.pack('<HHI', 1, 1, 0x0008),  # FDS_IN_ORDER
    'PING': struct.pack('<Q', 0x1234),
    'STATUS': b'',
    'METRICS': b'',
    'CREATE': struct.pack('<QIIIHH', 4096, 0, 0, 0o600, 0, 0) + s('a'),
    'CREATE_lease': struct.pack('<QIIIHH', 8192, 2 | 4, 0, 0, 1, 0) + s('lease'),
    'CREATE_anon': struct.pack('<QIIIHH', 4096, 0, 0x8, 0, 0, 0) + s(''),
    'CREATE_shm': struct.pack('<QIIIHH', 4096, 1, 0, 0o644, 2, 0) + s('shm'),
    'CREATE_file': struct.pack('<QIIIHH', 4096, 4, 0, 0, 3, 0) + s('file'),
    'OPEN': struct.pack('<II', 0, 0) + s('a'),
    'OPEN_ro': struct.pack('<II', 1, 0) + s('a'),
    'OPEN_wait': struct.pack('<II', 2, 100) + s('later'),
    'RESIZE': struct.pack('<Q', 65536) + s('a'),
    'SEAL': struct.pack('<II', 0x4, 0) + s('a'),
    'STAT': s('a'),
    'LIST': struct.pack('<QII', 0, 0, 0) + s(''),
    'DELETE': s('a'),
    'CHMOD': struct.pack('<II', 0o640, 0) + s('a'),
    'CHOWN': struct.pack('<II', 0xFFFFFFFF, 0) + s('a'),
    'QUOTA': b'',
    'REGISTER': struct.pack('<QII', 4096, 0, 0) + s('reg'),
    'REGISTER_lease': struct.pack('<QII', 4096, 1, 0o600) + s('reg-lease'),
    # the EVENTS feature (docs/protocol.md section 15)
    'HELLO_events': struct.pack('<HHI', 1, 1, 2),
    'WATCH': struct.pack('<II', 0, 0) + s(''),
    'WATCH_prefix': struct.pack('<II', 0, 0) + s('pub'),
    'UNWATCH': struct.pack('<II', 1, 0),
    'PUBLISH': struct.pack('<QQII', 4096, 0, 0, 0o644) + s('pub'),
    'PUBLISH_cas': struct.pack('<QQII', 4096, 1, 1, 0) + s('pub'),
    'OPENV': struct.pack('<IIQ', 1, 0, 0) + s('pub'),
    'OPENV_wait': struct.pack('<IIQ', 3, 100, 99) + s('pub'),
    'STATV': s('pub'),
    'EVENT': struct.pack('<QQQQIIII', 3, 3, 4096, 1, 0x0e, 0o644, 0, 0) + s('pub'),
    'OVERFLOW': struct.pack('<Q', 12),
}


def frame(key, **kw):
    op = OPS[key.split('_')[0]]
    p = PAYLOADS[key]
    if key in ('EVENT', 'OVERFLOW'):  # daemon-initiated: REPLY set, id = the watch id
        kw.setdefault('flags', 1)
    return hdr(op, len(p), **kw) + p


def write(dirname, name, data):
    d = os.path.join(HERE, dirname)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def conn_frame(key, fdspec=0, kinds=0, flags=0):
    op = key.split('_')[0]
    p = PAYLOADS[key]
    return bytes([1, OPIDX[op], flags, len(p), fdspec, kinds]) + p


def main():
    for key in PAYLOADS:
        write('corpus-fuzz-proto', 'frame-' + key.lower(), frame(key))
        write('corpus-fuzz-proto', 'payload-' + key.lower(), PAYLOADS[key])
    write('corpus-fuzz-proto', 'stream-session', b''.join(frame(k) for k in ('HELLO', 'CREATE', 'OPEN', 'LIST')))
    write('corpus-fuzz-proto', 'f2-huge-length', hdr(1, 0xFFFFFFFF))
    write('corpus-fuzz-proto', 'f5-bad-version', hdr(1, 8, version=9) + PAYLOADS['HELLO'])
    # METRICS reply: version 1, TRUNCATED, entries (metric, reserved, label, value); 0x7777 is a newer id
    write('corpus-fuzz-proto', 'metrics-reply',
          struct.pack('<HHI', 1, 1, 4) + struct.pack('<HHIQ', 1, 0, 0, 3) + struct.pack('<HHIQ', 32, 0, 0x11, 9)
          + struct.pack('<HHIQ', 68, 0, 1000, 2) + struct.pack('<HHIQ', 0x7777, 0, 0xFFFFFFFF, 1))
    write('corpus-fuzz-proto', 'metrics-reply-empty', struct.pack('<HHI', 1, 0, 0))
    write('corpus-fuzz-proto', 'list-reply',
          struct.pack('<QII', 0, 1, 0) + struct.pack('<QQIIII', 1, 4096, 2, 0o600, 0, 0) + s('a'))

    pump = bytes([3])
    session = bytes([2]) + pump
    write('corpus-fuzz-conn', 'hello', session)
    write('corpus-fuzz-conn', 'create-open-resize-seal-stat-list-delete',
          session + b''.join(conn_frame(k) + pump for k in
                             ('CREATE', 'OPEN', 'OPEN_ro', 'RESIZE', 'SEAL', 'STAT', 'LIST', 'DELETE')))
    write('corpus-fuzz-conn', 'backends-lease',
          session + b''.join(conn_frame(k) + pump for k in
                             ('CREATE_lease', 'CREATE_anon', 'CREATE_shm', 'CREATE_file', 'LIST')))
    write('corpus-fuzz-conn', 'open-wait-then-create',
          session + conn_frame('OPEN_wait') + pump + bytes([4, 50]) + conn_frame('PING') + bytes([5]) + pump)
    # fds with requests that take none, declared and undeclared (D1-D3, D5, D7)
    write('corpus-fuzz-conn', 'fds-declared', session + conn_frame('PING', fdspec=0x22, kinds=0b1110) + pump)
    write('corpus-fuzz-conn', 'fds-undeclared', session + conn_frame('STATUS', fdspec=0x03, kinds=0b111001) + pump)
    write('corpus-fuzz-conn', 'fds-too-many', session + conn_frame('STATUS', fdspec=0x57, kinds=0xff) + pump)
    write('corpus-fuzz-conn', 'raw-garbage-fds', session + bytes([0, 5, 0x01, 0x03]) + b'IOMD\x01' + pump)
    write('corpus-fuzz-conn', 'no-hello-timeout', bytes([4, 200]) + pump)
    # REGISTER: a good memfd (sealed, 0600), one without seals (D8), a pipe (D7), none, two
    write('corpus-fuzz-conn', 'register-good',
          session + conn_frame('REGISTER', fdspec=0x91, kinds=0) + pump + conn_frame('REGISTER_lease', fdspec=0x91)
          + pump + conn_frame('CHMOD') + pump + conn_frame('CHOWN') + pump + conn_frame('QUOTA') + pump)
    write('corpus-fuzz-conn', 'register-unsealed', session + conn_frame('REGISTER', fdspec=0x11, kinds=0) + pump)
    write('corpus-fuzz-conn', 'register-pipe', session + conn_frame('REGISTER', fdspec=0x91, kinds=1) + pump)
    write('corpus-fuzz-conn', 'register-nofd', session + conn_frame('REGISTER') + pump)
    write('corpus-fuzz-conn', 'register-two', session + conn_frame('REGISTER', fdspec=0xa2, kinds=0) + pump)
    write('corpus-fuzz-conn', 'metrics-after-errors',
          session + conn_frame('CREATE') + pump + conn_frame('CREATE') + pump + conn_frame('STAT') + pump
          + conn_frame('METRICS') + pump + conn_frame('STATUS') + pump + conn_frame('METRICS') + pump)
    # EVENTS: negotiated (op 6), watch, publish twice (memfds sealed), wait for a newer version, unwatch
    hello_ev = bytes([6]) + pump
    write('corpus-fuzz-conn', 'events-watch-publish-openv',
          hello_ev + conn_frame('WATCH') + pump + conn_frame('PUBLISH', fdspec=0x91, kinds=0) + pump
          + conn_frame('OPENV_wait') + pump + conn_frame('PUBLISH_cas', fdspec=0x91, kinds=0) + pump
          + conn_frame('STATV') + pump + conn_frame('OPENV') + pump + conn_frame('UNWATCH') + pump)
    write('corpus-fuzz-conn', 'events-watch-every-change',
          hello_ev + conn_frame('WATCH_prefix') + pump + conn_frame('WATCH') + pump
          + b''.join(conn_frame(k) + pump for k in ('CREATE', 'RESIZE', 'SEAL', 'CHMOD', 'CHOWN', 'DELETE'))
          + conn_frame('CREATE_lease') + pump + bytes([5]) + pump)
    write('corpus-fuzz-conn', 'events-without-hello-flag',
          session + conn_frame('WATCH') + pump + conn_frame('PUBLISH', fdspec=0x91, kinds=0) + pump
          + conn_frame('EVENT') + pump)
    # FDS_IN_ORDER: pipelined OPENs and CREATEs whose replies (one fd each) share sendmsg()s with the HELLO reply
    hello_order = bytes([7])
    write('corpus-fuzz-conn', 'fds-in-order-pipelined',
          hello_order + conn_frame('CREATE') + conn_frame('OPEN') + conn_frame('OPEN') + conn_frame('STAT')
          + conn_frame('OPEN') + pump + conn_frame('DELETE') + conn_frame('OPEN') + pump)
    write('corpus-fuzz-conn', 'cut-frame', session + bytes([0, 10]) + bytes([0, 0]) + hdr(1, 8)[:10] + bytes([5]) + pump)


if __name__ == '__main__':
    main()
