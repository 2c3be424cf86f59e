"""Build the documentation site into `_docs/`.

With Quarto on PATH this is nbdev's own `nbdev-docs`. Without it (the project's machines cannot
install Quarto), the notebooks are processed by nbdev (`nbdev-proc-nbs`: it executes the import,
export and `show_doc` cells and adds an API doc for every exported symbol) in a scratch copy of the
project, and each processed notebook is rendered to static HTML with nbconvert, with a shared
navigation bar and an index page. Open `_docs/index.html` in a browser.

Usage: python tools/build_docs.py [--out _docs] [--file-re REGEX]
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = 'https://foundation-jets.github.io/foundation_jets/'
BIN = Path(sys.executable).parent


def _page_name(nb: dict, path: Path) -> str:
    "Output file name from the processed notebook's frontmatter (nbdev strips the number prefix)."
    for c in nb['cells']:
        if c['cell_type'] == 'raw':
            m = re.search(r'^output-file:\s*(\S+)', ''.join(c['source']), re.M)
            if m:
                return m.group(1)
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', path.stem) + '.html'


def _title(nb: dict, default: str) -> str:
    for c in nb['cells']:
        if c['cell_type'] == 'raw':
            m = re.search(r'^title:\s*(.+)$', ''.join(c['source']), re.M)
            if m:
                return m.group(1).strip().strip('"\'').replace('`', '')
    return default


_QUARTO_ATTRS = re.compile(r'\{target="_blank"[^}]*\}')


def _clean_output(o: dict) -> dict:
    "Drop Quarto link attributes (`[source](url){target=...}`) that plain markdown shows as text."
    data = o.get('data', {})
    if 'text/markdown' in data:
        md = data['text/markdown']
        md = ''.join(md) if isinstance(md, list) else md
        o = dict(o, data={**data, 'text/markdown': _QUARTO_ATTRS.sub('', md)})
    return o


def _description(nb: dict) -> str:
    for c in nb['cells']:
        if c['cell_type'] == 'raw':
            m = re.search(r'^description:\s*(.+(?:\n  .+)*)', ''.join(c['source']), re.M)
            if m:
                return ' '.join(m.group(1).split()).strip('"\'')
    return ''


def _prepare(nb: dict, pages: dict) -> dict:
    "Apply the Quarto cell options nbconvert does not know: echo false, include false; relink the site."
    head = f'# {_title(nb, "")}\n\n> {_description(nb)}'
    cells = [{'cell_type': 'markdown', 'id': 'fj-title', 'metadata': {}, 'source': head}]
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'raw':
            continue
        if c['cell_type'] == 'code':
            opts = dict(re.findall(r'^#\|\s*([\w-]+):\s*(\S+)', src, re.M))
            if opts.get('include') == 'false':
                continue
            src = '\n'.join(line for line in src.splitlines() if not line.startswith('#|'))
            if opts.get('echo') == 'false':
                if not c.get('outputs'):
                    continue
                tags = c.get('metadata', {}).get('tags', []) + ['remove_input']
                c = dict(c, metadata={**c.get('metadata', {}), 'tags': tags}, source='')
            else:
                c = dict(c, source=src)
            c['outputs'] = [_clean_output(o) for o in c.get('outputs', [])]
        else:
            src = src.replace(SITE, '')
            for nbname, page in pages.items():
                src = src.replace(nbname, page)
            c = dict(c, source=src)
        keep = ('cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count', 'attachments')
        c = {k: v for k, v in c.items() if k in keep}
        c['metadata'] = {k: v for k, v in c.get('metadata', {}).items() if k in ('jupyter', 'tags')}
        cells.append(c)
    return dict(nb, cells=cells)


def _nav(pages: list) -> str:
    links = ' '.join(f'<a href="{p}" style="margin-right:1em">{t}</a>' for p, t in pages)
    return (
        f'<nav style="padding:.6em 1em;background:#2c3e50;position:sticky;top:0;z-index:9">'
        f'<b style="color:#fff;margin-right:1.5em">foundation_jets</b>'
        f'<span style="font-size:.9em">{links}</span></nav>'
        '<style>nav a{color:#dfe6ee;text-decoration:none} nav a:hover{color:#fff}</style>'
    )


def build(out: Path, file_re: str = r'\.(?:ipynb|qmd)$') -> list:
    if shutil.which('quarto'):
        subprocess.run([str(BIN / 'nbdev-docs')], cwd=ROOT, check=True)
        return sorted((ROOT / '_docs').glob('*.html'))
    import nbformat
    from nbconvert import HTMLExporter

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(ROOT / 'pyproject.toml', tmp)
        shutil.copytree(ROOT / 'nbs', tmp / 'nbs')
        r = subprocess.run([str(BIN / 'nbdev-proc-nbs'), '--file-re', file_re], cwd=tmp, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f'nbdev-proc-nbs failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}')
        procs = sorted(p for p in (tmp / '_proc').rglob('*.ipynb'))
        nbs = {p: json.loads(p.read_text()) for p in procs}
        names = {p: _page_name(nb, p) for p, nb in nbs.items()}
        links = {p.name: names[p] for p in procs}
        order = sorted(procs, key=lambda p: (names[p] != 'index.html', str(p.relative_to(tmp / '_proc'))))
        nav = _nav([(names[p], _title(nbs[p], p.stem)) for p in order])
        from traitlets.config import Config

        cfg = Config()
        cfg.TagRemovePreprocessor.enabled = True
        cfg.TagRemovePreprocessor.remove_input_tags = {'remove_input'}
        exporter = HTMLExporter(config=cfg, template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for p in order:
            nb = nbformat.reads(json.dumps(_prepare(nbs[p], links)), as_version=4)
            nb.metadata['title'] = _title(nbs[p], p.stem)
            html, _ = exporter.from_notebook_node(nb)
            html = re.sub(r'(<body[^>]*>)', r'\1' + nav.replace('\\', r'\\'), html, count=1)
            dst = out / names[p]
            dst.write_text(html)
            written.append(dst)
    return written


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT / '_docs'))
    ap.add_argument('--file-re', default=r'\.(?:ipynb|qmd)$')
    a = ap.parse_args()
    pages = build(Path(a.out), a.file_re)
    print(f'wrote {len(pages)} pages to {a.out}: ' + ', '.join(p.name for p in pages))
