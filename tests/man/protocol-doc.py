#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""protocol-doc: every opcode, event, flag bit and backend that proto/proto.h defines has its row, with the same
value and name, in a table of docs/protocol.md. Exits 1 listing each one missing.
Usage: protocol-doc.py SOURCE_DIR"""
import re
import sys

src = sys.argv[1]
h = open(src + "/proto/proto.h").read()
md = open(src + "/docs/protocol.md").read()
bad = []
n = 0


def row(value, name, quoted):
    """A table row "| VALUE | NAME |" (NAME in backquotes if @quoted), value case-insensitive."""
    q = "`" if quoted else ""
    return re.search(r"^\|\s*%s\s*\|\s*%s%s%s\s*\|" % (re.escape(value), q, re.escape(name), q), md, re.M | re.I)


for name, value in re.findall(r"\bPROTO_OP_(\w+) = (0x[0-9A-Fa-f]{4})", h):
    if name.endswith(("_FIRST", "_LAST")):
        continue
    n += 1
    if not row(value, name, False):
        bad.append("opcode %s = %s" % (name, value))
for name, value in re.findall(r"\bPROTO_EV_(\w+) = (0x[0-9A-Fa-f]{4})", h):
    n += 1
    if not row(value, name, True):
        bad.append("event %s = %s" % (name, value))
for group in ("SEAL", "CREATE", "OPEN", "REGION", "HELLO", "REGISTER", "PUBLISH"):
    for name, value in re.findall(r"#define PROTO_%s_(\w+) (0x[0-9A-Fa-f]+)u" % group, h):
        if name in ("KNOWN", "MASK", "SHIFT", "PAGES", "REQUIRED") or name.endswith("_KNOWN"):
            continue
        n += 1
        if not row("0x%04x" % int(value, 16), name, True):
            bad.append("%s flag %s = %s" % (group, name, value))
for name, value in re.findall(r"\bPROTO_BACKEND_(\w+) = (\d+)", h):
    n += 1
    if not row(value, name, True):
        bad.append("backend %s = %s" % (name, value))
if n < 40:
    bad.append("only %d constants read from proto/proto.h" % n)
for b in bad:
    print("FAIL: docs/protocol.md has no table row for proto.h's %s" % b)
if not bad:
    print("protocol-doc: %d opcodes, events, flag bits and backends of proto.h in docs/protocol.md" % n)
sys.exit(1 if bad else 0)
