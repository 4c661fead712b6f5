#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""openmetrics-check: validate text exposition read on stdin, strictly, and print its samples as JSON.

    openmetrics-check.py openmetrics|prometheus < text

openmetrics: OpenMetrics 1.0 text as iomemctl writes it: "# HELP" and "# TYPE" of a family, once each, before
its samples; a counter family's name has no _total and its samples are name_total; every family's samples are
contiguous; no blank line; "# EOF" is the last line and the text ends with a newline after it.
prometheus: the 0.0.4 text format: the same, except that TYPE names a counter with its _total and there is no # EOF.
Both: valid metric and label names, label values with only the allowed escapes, values that parse as numbers,
no sample twice. Exit 1 with the offending line on stderr; else print {"name{labels}": value} on stdout.
"""
import json
import re
import sys

NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*'
LVALUE = r'(?:[^"\\\n]|\\[\\"n])*'
HELP_RE = re.compile(r'^# HELP (' + NAME + r') (.*)$')
TYPE_RE = re.compile(r'^# TYPE (' + NAME + r') (counter|gauge|untyped|unknown|info|stateset|histogram|summary)$')
SAMPLE_RE = re.compile(r'^(' + NAME + r')(\{(?:' + LABEL + '="' + LVALUE + '"(?:,' + LABEL + '="' + LVALUE +
                       r'")*)?\})? (\S+)$')
VALUE_RE = re.compile(r'^[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|Inf|NaN)$')


def die(lineno, line, why):
    sys.stderr.write('openmetrics-check: line %d: %s: %r\n' % (lineno, why, line))
    sys.exit(1)


def check(text, openmetrics):
    if not text.endswith('\n'):
        die(0, text[-40:], 'no newline at the end')
    lines = text[:-1].split('\n')
    families = {}  # name -> {"help":, "type":, "closed": bool, "samples": n}
    current = None
    samples = {}
    eof = False
    for i, line in enumerate(lines, 1):
        if eof:
            die(i, line, 'text after # EOF')
        if line == '# EOF':
            if not openmetrics:
                die(i, line, '# EOF in the prometheus format')
            eof = True
            continue
        m = HELP_RE.match(line) or TYPE_RE.match(line)
        if m:
            kind = 'help' if line.startswith('# HELP') else 'type'
            name = m.group(1)
            fam = families.setdefault(name, {'help': None, 'type': None, 'samples': 0})
            if fam[kind] is not None:
                die(i, line, 'second ' + kind.upper())
            if fam['samples']:
                die(i, line, kind.upper() + ' after the samples')
            if current is not None and current != name:
                families[current]['closed'] = True
            if fam.get('closed'):
                die(i, line, 'family reopened')
            if openmetrics and name.endswith('_total') and kind == 'type':
                die(i, line, 'OpenMetrics family name ends in _total')
            fam[kind] = m.group(2)
            current = name
            continue
        if line.startswith('#'):
            die(i, line, 'comment that is neither HELP, TYPE nor EOF')
        m = SAMPLE_RE.match(line)
        if not m:
            die(i, line, 'not a sample')
        name, labels, value = m.group(1), m.group(2) or '', m.group(3)
        if not VALUE_RE.match(value):
            die(i, line, 'bad value')
        if current is None:
            die(i, line, 'sample before any HELP/TYPE')
        fam = families[current]
        if fam['type'] is None or fam['help'] is None:
            die(i, line, 'sample before its family has both HELP and TYPE')
        want = current + '_total' if openmetrics and fam['type'] == 'counter' else current
        if name != want:
            die(i, line, 'sample name is not %s (family %s, %s)' % (want, current, fam['type']))
        if not openmetrics and fam['type'] == 'counter' and not name.endswith('_total'):
            die(i, line, 'counter without _total')
        key = name + labels
        if key in samples:
            die(i, line, 'sample twice')
        samples[key] = float(value) if '.' in value or 'e' in value.lower() or value in ('Inf', 'NaN') \
            else int(value)
        fam['samples'] += 1
    if openmetrics and not eof:
        die(len(lines), lines[-1] if lines else '', 'no # EOF at the end')
    for name, fam in families.items():
        if not fam['samples']:
            die(0, name, 'family without samples')
    return samples


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ('openmetrics', 'prometheus'):
        sys.stderr.write(__doc__)
        sys.exit(2)
    samples = check(sys.stdin.read(), sys.argv[1] == 'openmetrics')
    json.dump(samples, sys.stdout, sort_keys=True)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
