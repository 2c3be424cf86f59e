"""Markdown prose of the notebooks in 120-character lines (ruff checks code cells only).

A prose line is any markdown line outside fenced code and display math that is not a table row, a heading, a
quote (nbdev's one-line description), HTML or a rule; such lines may be at most 120 characters. `--fix` reflows
each paragraph or list item that has a longer line, keeping inline math and code spans whole (a soft line break
renders the same). Exit status 1 when a line is too long (after `--fix`: when one cannot be shortened).

    python tools/markdown_lines.py [--fix] [notebooks ...]   (default: nbs/*.ipynb and tutorial/*.ipynb)
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 120
LIST_ITEM = re.compile(r'^(\s*)([-*+]|\d+\.)\s+')
NOT_PROSE = ('|', '>', '#', '<', '---')


def words(text: str) -> list:
    "Split at spaces outside inline math ($...$) and code (`...`)."
    out, current, dollars, ticks = [], '', 0, 0
    for ch in text:
        if ch == '$' and ticks % 2 == 0:
            dollars += 1
        elif ch == '`' and dollars % 2 == 0:
            ticks += 1
        if ch == ' ' and dollars % 2 == 0 and ticks % 2 == 0:
            if current:
                out.append(current)
            current = ''
        else:
            current += ch
    return out + ([current] if current else [])


def fill(tokens: list, first: str, indent: str) -> list:
    "Greedy fill of `tokens` to WIDTH: the first line starts with `first`, the others with `indent`."
    lines, current, empty = [], first, True
    for token in tokens:
        candidate = current + token if empty else current + ' ' + token
        if len(candidate) > WIDTH and not empty:
            lines.append(current)
            current, empty = indent + token, False
        else:
            current, empty = candidate, False
    return lines + [current]


def reflow_block(block: list) -> list:
    "One paragraph or list item, refilled if one of its lines is too long (hard line breaks are kept as they are)."
    if all(len(line) <= WIDTH for line in block) or any(line.endswith(('  ', '\\')) for line in block):
        return block
    item = LIST_ITEM.match(block[0])
    first = item.group(0) if item else re.match(r'^\s*', block[0]).group(0)
    indent = ' ' * len(first) if item else first
    text = ' '.join(line.strip() for line in block)
    if item:
        text = text[len(item.group(0).strip()) :].strip()
    return fill(words(text), first, indent)


def prose_blocks(source: str):
    "Yield (is_prose, lines) runs of a markdown cell: prose blocks (paragraphs, list items) and everything else."
    fence = math = False
    block = []
    for line in source.split('\n'):
        s = line.strip()
        in_block = fence or math  # inside fenced code or display math when the line starts
        if s.startswith('```'):
            fence = not fence
        elif not fence and line.count('$$') % 2:  # a display formula opens or closes on this line
            math = not math
        other = in_block or fence or math or s == '' or s.startswith(NOT_PROSE) or s.startswith(('```', '$$'))
        if other or LIST_ITEM.match(line):
            if block:
                yield True, block
            block = []
        if other:
            yield False, [line]
        else:
            block.append(line)
    if block:
        yield True, block


def long_lines(source: str) -> list:
    "The prose lines of a markdown cell over WIDTH characters."
    return [line for prose, block in prose_blocks(source) if prose for line in block if len(line) > WIDTH]


def reflow(source: str) -> str:
    out = []
    for prose, block in prose_blocks(source):
        out += reflow_block(block) if prose else block
    return '\n'.join(out)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    fix = '--fix' in args
    paths = [Path(a) for a in args if a != '--fix']
    paths = paths or sorted((ROOT / 'nbs').glob('*.ipynb')) + sorted((ROOT / 'tutorial').glob('*.ipynb'))
    bad = 0
    for path in paths:
        nb = json.loads(path.read_text())
        changed = False
        for i, cell in enumerate(nb['cells']):
            if cell['cell_type'] != 'markdown':
                continue
            source = ''.join(cell['source'])
            if fix and long_lines(source):
                lines = reflow(source).split('\n')
                cell['source'] = [line + '\n' for line in lines[:-1]] + [lines[-1]]
                source, changed = ''.join(cell['source']), True
            for line in long_lines(source):
                bad += 1
                print(f'{path}: markdown cell {i}: {len(line)} characters: {line[:60]}...')
        if changed:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
