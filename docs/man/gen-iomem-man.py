#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""gen-iomem-man: the library's manual pages, made from client/iomem.h at build time so they cannot drift.

iomem(3) is the overview: the header's leading comment, the constants and a list of the functions. Each
"---- title ----" section of the header becomes one page (local regions -> iomem_region(3), the daemon ->
iomem_client(3), ...) with every function's prototype and doc comment, and every function gets a one-line
page that sources its group's page (so `man iomem_create` works).

Usage: gen-iomem-man.py HEADER OUTDIR VERSION
The date is $SOURCE_DATE_EPOCH (reproducible builds) or else the header's modification time.
"""
import datetime
import os
import re
import sys

# page names of the header's sections; a section not listed gets iomem_<first word of its title>
PAGES = {
    "local regions": ("iomem_region", "local memory regions, their file descriptors and mappings"),
    "the daemon": ("iomem_client", "talk to iomemd: connect, create, open, list and change named regions"),
    "access control, quotas, registering": ("iomem_access", "ownership, modes, quotas and registering a memfd"),
    "metrics": ("iomem_monitoring", "the daemon's counters and gauges for monitoring"),
}


def die(msg):
    sys.stderr.write("gen-iomem-man: %s\n" % msg)
    sys.exit(1)


class Section:
    def __init__(self, title):
        self.title = title
        if title in PAGES:
            self.page, self.summary = PAGES[title]
        else:
            words = [w for w in re.findall(r"[a-z0-9]+", title.lower()) if w != "the"]
            if not words:
                die("section '%s' has no usable name" % title)
            self.page, self.summary = "iomem_" + words[0], title
        self.items = []  # ("func", name, proto, doc) | ("type", text, doc) | ("define", text, doc)


def strip_comment(text):
    """The lines of a /* */ comment without the decoration; indentation after ' * ' is kept."""
    body = text[2:-2]
    lines = body.split("\n")
    out = []
    for ln in lines:
        s = ln.rstrip()
        m = re.match(r"^\s*\* ?(.*)$", s)
        if m:
            s = m.group(1)
        elif s.strip() == "":
            s = ""
        else:
            s = s.strip()
        out.append(s)
    while out and out[0].strip() == "":
        out.pop(0)
    while out and out[-1].strip() == "":
        out.pop()
    return out


def parse(header):
    with open(header, encoding="utf-8") as f:
        text = f.read()
    # C++ guards are not API
    text = re.sub(r"#ifdef __cplusplus\n.*?#endif\n", "", text, flags=re.S)
    title = None
    overview = []
    front = Section("overview")
    front.page = "iomem"
    sections = [front]
    cur = front
    pending = None  # doc comment waiting for its declaration
    i, n = 0, len(text)
    while i < n:
        # whitespace; a blank line separates a comment from what follows
        j = i
        while j < n and text[j] in " \t\n":
            j += 1
        if text.count("\n", i, j) >= 2:
            pending = None
        i = j
        if i >= n:
            break
        if text.startswith("/*", i):
            end = text.find("*/", i)
            if end < 0:
                die("unterminated comment")
            c = text[i:end + 2]
            i = end + 2
            lines = strip_comment(c)
            one = " ".join(ln.strip() for ln in lines)
            m = re.match(r"^-+\s*(.*?)\s*-+$", one)
            if m:
                cur = Section(m.group(1))
                sections.append(cur)
                pending = None
            elif title is None:
                title = one
            elif not overview and cur is front and not front.items:
                overview = lines
            else:
                pending = lines
            continue
        if text[i] == "#":
            end = text.find("\n", i)
            line = text[i:end if end >= 0 else n]
            i = end + 1 if end >= 0 else n
            if line.startswith("#define"):
                # a comment starts a group of defines; the ones right after it join that group
                cur.items.append(("define", line, pending))
                pending = None
            continue
        # a declaration: up to ';' at brace depth 0, comments inside kept
        depth, j = 0, i
        while j < n:
            if text.startswith("/*", j):
                j = text.find("*/", j) + 2
                continue
            ch = text[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == ";" and depth == 0:
                break
            j += 1
        decl = text[i:j + 1]
        i = j + 1
        # a comment on the same line after ';' belongs to it
        m = re.match(r"[ \t]*(/\*.*?\*/)", text[i:])
        if m:
            decl += " " + m.group(1)
            i += m.end()
        flat = re.sub(r"/\*.*?\*/", "", decl, flags=re.S)
        if "{" in flat:
            cur.items.append(("type", decl, pending))
        elif re.match(r"^\s*typedef\b", flat):
            cur.items.append(("type", decl, pending))  # a callback's type
        elif re.match(r"^\s*struct\s+\w+\s*;\s*$", flat):
            pass  # opaque type, named in the overview
        else:
            m = re.search(r"\b(iomem_\w+)\s*\(", flat)
            if not m:
                die("cannot read declaration: %s" % flat.strip())
            # the header's own line breaks, continuation lines indented by four
            proto = "\n".join(("    " if k else "") + ln.strip()
                               for k, ln in enumerate(flat.strip().split("\n")))
            cur.items.append(("func", m.group(1), proto, pending))
        pending = None
    if title is None:
        die("no title comment")
    return title, overview, sections


# ---- roff ------------------------------------------------------------------

def esc(s):
    s = s.replace("\\", "\\e")
    if s[:1] in (".", "'"):
        s = "\\&" + s
    return s


def inline(s):
    """Running text: escape, and set function names in bold."""
    s = esc(s.strip())
    s = re.sub(r"@(\w+)", r"\\fI\1\\fP", s)
    return re.sub(r"\b(iomem_\w+)\(\)", r"\\fB\1\\fP()", s)


def verbatim(text):
    out = [".RS 4", ".nf"]
    for ln in text.rstrip("\n").split("\n"):
        out.append(esc(ln.rstrip()) if ln.strip() else ".sp")
    out += [".fi", ".RE"]
    return out


def paragraphs(lines):
    """Comment lines -> roff: blank lines split paragraphs, '- ' starts a bullet."""
    out = []
    para, bullet = True, False
    for ln in lines:
        if not ln.strip():
            para = True
            continue
        m = re.match(r"^\s*- (.*)$", ln)
        if m:
            out += [".IP \\(bu 2", inline(m.group(1))]
            para, bullet = False, True
            continue
        if bullet and ln[:1] != " ":
            para, bullet = True, False  # back at the left margin: the list has ended
        if para:
            out.append(".PP")
            para = False
        out.append(inline(ln))
    return out


def func_doc(name, doc):
    """A function's comment -> (text lines, [(param, text)], return text)."""
    if not doc:
        return [], [], ""
    lines = list(doc)
    m = re.match(r"^%s\(\) - (.*)$" % re.escape(name), lines[0].strip())
    if m:
        lines[0] = m.group(1)
        lines[0] = lines[0][:1].upper() + lines[0][1:]
    text, params, ret = [], [], None
    last = None
    for ln in lines:
        s = ln.strip()
        if ret is not None:
            ret += " " + s
            continue
        m = re.search(r"(^|\s)Return:", s)
        if m:
            ret = s[m.end():].strip()
            s = s[:m.start()].strip()
            if not s:
                continue
            ln = s
        if re.match(r"^@\w+:", s):
            for pm in re.finditer(r"@(\w+):\s*(.*?)(?=\s@\w+:|$)", s):
                params.append([pm.group(1), pm.group(2)])
            last = "param"
            continue
        if last == "param" and ln[:1] == " ":
            params[-1][1] += " " + s
            continue
        last = None
        text.append(ln)
    return text, params, ret or ""


def th(name, date, version):
    return ['.\\" %s(3): generated from iomem.h by docs/man/gen-iomem-man.py; edit the header, not this file'
            % name.lower(),
            '.TH %s 3 %s "iomemd %s" "libiomem"' % (name.upper(), date, version)]


def synopsis():
    return [".SH SYNOPSIS", ".nf", ".B #include <iomem.h>", ".fi", ".PP",
            "Compile and link with",
            ".IR \"cc ... $(pkg-config \\-\\-cflags \\-\\-libs iomem)\" ."]


def see_also(sections, this):
    refs = ["iomem"] + [s.page for s in sections[1:]]
    refs = [r for r in refs if r != this]
    out = [".SH SEE ALSO"]
    for r in refs:
        out.append(".BR %s (3)," % r)
    out += [".BR iomemctl (1),", ".BR iomemd (8)"]
    return out


def group_page(sec, sections, date, version):
    funcs = [it for it in sec.items if it[0] == "func"]
    out = th(sec.page, date, version)
    out += [".SH NAME", "%s \\- %s" % (", ".join(f[1] for f in funcs), esc(sec.summary))]
    out += synopsis()
    for it in sec.items:
        if it[0] == "type":
            out.append(".PP")
            out += verbatim(it[1])
    out.append(".PP")
    out += verbatim("\n".join(f[2] for f in funcs))
    out += [".SH DESCRIPTION",
            "These functions are the part of libiomem that",
            "the header",
            ".I iomem.h",
            "introduces as \\(lq%s\\(rq." % esc(sec.title),
            "Errors are negative errno values, as described in",
            ".BR iomem (3)."]
    for it in sec.items:
        if it[0] == "type" and it[2]:
            out += paragraphs(it[2])
    for _, name, proto, doc in funcs:
        text, params, ret = func_doc(name, doc)
        out += [".SS %s()" % name]
        out += verbatim(proto)
        out += paragraphs(text)
        for p, t in params:
            out += [".TP", ".I %s" % p, inline(t)]
        if ret:
            out += [".PP", ".B Return:", inline(ret)]
        if not (text or params or ret):
            out += [".PP", "See the prototype."]
    out += see_also(sections, sec.page)
    return out


def overview_page(title, overview, sections, date, version):
    front = sections[0]
    desc = re.sub(r"^iomem\.h:\s*", "", title).rstrip(".")
    out = th("iomem", date, version)
    out += [".SH NAME", "iomem \\- %s" % esc(desc)]
    out += synopsis()
    out += [".SH DESCRIPTION"] + paragraphs(overview)
    out += [".SH FUNCTIONS"]
    for sec in sections[1:]:
        funcs = [it[1] for it in sec.items if it[0] == "func"]
        out += [".SS %s: %s(3)" % (esc(sec.title[:1].upper() + sec.title[1:]), sec.page), ".PP"]
        out += [".BR %s ()%s" % (f, "," if k + 1 < len(funcs) else "") for k, f in enumerate(funcs)]
    out += [".SH CONSTANTS"]
    groups = []
    for it in front.items:
        if it[0] == "type":
            groups.append((it[2], it[1]))
        elif it[0] == "define":
            if it[2] is not None or not groups:
                groups.append((it[2], it[1]))
            else:
                groups[-1] = (groups[-1][0], groups[-1][1] + "\n" + it[1])
    for doc, body in groups:
        if doc:
            out += [".PP", inline(" ".join(x.strip() for x in doc))]
        out += verbatim(body)
    out += see_also(sections, "iomem")
    return out


def main():
    if len(sys.argv) != 4:
        die("usage: gen-iomem-man.py HEADER OUTDIR VERSION")
    header, outdir, version = sys.argv[1:]
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = int(epoch) if epoch else int(os.stat(header).st_mtime)
    date = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime("%Y-%m-%d")
    title, overview, sections = parse(header)
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(outdir):
        if f.endswith(".3"):
            os.unlink(os.path.join(outdir, f))
    pages = {"iomem": overview_page(title, overview, sections, date, version)}
    seen = set()
    for sec in sections[1:]:
        if sec.page in pages:
            die("two sections make the page %s" % sec.page)
        pages[sec.page] = group_page(sec, sections, date, version)
        for it in sec.items:
            if it[0] == "func":
                if it[1] in seen:
                    die("%s declared twice" % it[1])
                seen.add(it[1])
                if it[1] not in pages:
                    pages[it[1]] = [".so man3/%s.3" % sec.page]
    for name, lines in pages.items():
        # a paragraph macro right after a heading is redundant (mandoc warns)
        lines = [ln for k, ln in enumerate(lines)
                 if not (ln == ".PP" and k > 0 and lines[k - 1].startswith((".SH", ".SS")))]
        with open(os.path.join(outdir, name + ".3"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
