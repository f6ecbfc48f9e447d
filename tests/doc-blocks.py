#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Lists or prints the fenced code blocks of Markdown files, with the
HTML comment markers right above each (<!-- TAG: VALUE -->).

  doc-blocks.py list FILE...       one line per block: FILE LINE LANG, then
                                   TAG=VALUE per marker, tab-separated
  doc-blocks.py get FILE LINE      the text of the block whose fence is at LINE
  doc-blocks.py find FILE TAG VAL  the text of the block marked TAG: VAL
"""
import re
import sys

MARKER = re.compile(r'^<!--\s*([\w-]+):\s*(.*?)\s*-->$')


def blocks(path):
    lines = open(path, encoding='utf-8').read().split('\n')
    markers = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line.strip())
        if m:
            markers.append((m.group(1), m.group(2)))
        elif line.startswith('```'):
            lang = line[3:].strip()
            start = i + 1
            j = start
            while j < len(lines) and not lines[j].startswith('```'):
                j += 1
            yield i + 1, lang, markers, '\n'.join(lines[start:j]) + '\n'
            markers = []
            i = j
        elif line.strip():
            markers = []
        i += 1


def main(argv):
    if argv[1] == 'list':
        for path in argv[2:]:
            for line, lang, markers, _ in blocks(path):
                fields = [path, str(line), lang or '-']
                fields += ['%s=%s' % m for m in markers]
                print('\t'.join(fields))
    elif argv[1] == 'get':
        for line, _, _, text in blocks(argv[2]):
            if line == int(argv[3]):
                sys.stdout.write(text)
                return 0
        return 1
    elif argv[1] == 'find':
        for _, _, markers, text in blocks(argv[2]):
            if (argv[3], argv[4]) in markers:
                sys.stdout.write(text)
                return 0
        print('%s: no block marked %s: %s' % (argv[2], argv[3], argv[4]), file=sys.stderr)
        return 1
    return 0


sys.exit(main(sys.argv))
