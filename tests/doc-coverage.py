#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Fails if a public symbol of the installed headers has no doc comment.

A symbol is documented when a comment opening with /** names it first
(`/** name: ...` on one line, or `/**` then ` * name:`), the gtk-doc form the
API reference is generated from. Public symbols: functions declared with a
library's export macro, typedefs, and macros (not include guards, export or
declaration-bracket macros).

Usage: doc-coverage.py HEADER...
"""
import re
import sys

DOC = re.compile(r'/\*\*\s*(?:\n\s*\*\s*)?([A-Za-z_]\w*)\s*:')
API = re.compile(r'^(?:PAL|MESH_PAYLOAD|MESH_REMOTE|MESH_PROCESS)_API\b')
SKIP_MACRO = re.compile(r'^(__|_)|_H$|_H_INSIDE__$|_API$|_BEGIN_DECLS$|_END_DECLS$')


def symbols(text):
    """Yields (name, line) for each public symbol declared in @text."""
    lines = text.split('\n')
    i = 0
    while i < len(lines):
        line = lines[i]
        if API.match(line):
            decl = line
            j = i
            while ';' not in decl and j + 1 < len(lines):
                j += 1
                decl += ' ' + lines[j]
            m = re.search(r'([A-Za-z_]\w*)\s*\(', decl)
            if m:
                yield m.group(1), i + 1
        elif line.startswith('#define '):
            name = re.match(r'#define\s+(\w+)', line).group(1)
            if not SKIP_MACRO.search(name):
                yield name, i + 1
        elif line.startswith('typedef '):
            decl = line
            j = i
            depth = decl.count('{') - decl.count('}')
            while (depth > 0 or ';' not in decl) and j + 1 < len(lines):
                j += 1
                decl += ' ' + lines[j]
                depth += lines[j].count('{') - lines[j].count('}')
            tail = decl[decl.rfind('}') + 1:] if '}' in decl else decl
            m = re.search(r'\(\s*\*\s*(\w+)\s*\)', tail)
            if not m:
                m = re.search(r'(\w+)\s*(?:\[[^]]*\])?\s*;', tail)
            if m:
                yield m.group(1), i + 1
        i += 1


def main(paths):
    documented = set()
    texts = {}
    for path in paths:
        texts[path] = open(path, encoding='utf-8').read()
        documented.update(DOC.findall(texts[path]))
    missing = []
    seen = set()
    for path in paths:
        for name, line in symbols(texts[path]):
            if name in documented or name in seen:
                continue
            seen.add(name)
            missing.append('%s:%d: %s' % (path, line, name))
    for m in missing:
        print('undocumented: ' + m)
    total = len(seen) + sum(1 for p in paths for n, _ in symbols(texts[p]) if n in documented)
    print('%d public symbols without a doc comment' % len(missing))
    return 1 if missing else 0


sys.exit(main(sys.argv[1:]))
