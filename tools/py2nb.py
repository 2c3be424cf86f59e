"""Convert a percent-format script (`# %%` cells) into a clean notebook.

Authoring aid for developers: write `.nbsrc/NAME.py`, then
`python tools/py2nb.py .nbsrc/NAME.py nbs/NAME.ipynb`. The notebook is the source of
truth afterwards; nbdev exports from it.

Cell markers:
- `# %%`                          a code cell
- `# %% [markdown]`               a markdown cell; each line loses its leading `# `
- `# %% tags=["parameters"]`      a code cell with tags (papermill)
"""
import json, re, sys, uuid
from pathlib import Path

_MARK = re.compile(r'^# %%(?P<md>\s*\[markdown\])?(?:\s*tags=(?P<tags>\[.*\]))?\s*$')

def _cell(kind, lines, tags):
    while lines and not lines[-1].strip(): lines.pop()
    while lines and not lines[0].strip(): lines.pop(0)
    if kind == 'markdown': lines = [l[2:] if l.startswith('# ') else l.lstrip('#') for l in lines]
    src = [l + '\n' for l in lines]
    if src: src[-1] = src[-1][:-1]
    meta = {'tags': tags} if tags else {}
    c = {'cell_type': kind, 'id': uuid.uuid4().hex[:8], 'metadata': meta, 'source': src}
    if kind == 'code': c.update(execution_count=None, outputs=[])
    return c

def py2nb(text: str) -> dict:
    cells, kind, lines, tags = [], None, [], None
    for line in text.splitlines():
        m = _MARK.match(line)
        if m:
            if kind is not None: cells.append(_cell(kind, lines, tags))
            kind = 'markdown' if m['md'] else 'code'
            tags, lines = (json.loads(m['tags']) if m['tags'] else None), []
        elif kind is not None: lines.append(line)
    if kind is not None: cells.append(_cell(kind, lines, tags))
    cells = [c for c in cells if c['source']]
    return {'cells': cells, 'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
            'nbformat': 4, 'nbformat_minor': 5}

if __name__ == '__main__':
    src, dst = map(Path, sys.argv[1:3])
    dst.write_text(json.dumps(py2nb(src.read_text()), indent=1) + '\n')
    print(f'wrote {dst}')
