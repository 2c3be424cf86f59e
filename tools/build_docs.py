"""Build the documentation site into `_docs/`.

With Quarto on PATH this is nbdev's own `nbdev-docs`. Without it (the project's machines cannot
install Quarto), the notebooks of `nbs/` are processed by nbdev (`nbdev-proc-nbs`: it executes the
import, export and `show_doc` cells and adds an API doc for every exported symbol) in a scratch copy of
the project, and each processed notebook is rendered to static HTML with nbconvert. The tutorials of
`tutorial/` are pages too, rendered with their committed outputs (text, tables, plots), never executed.
Every page gets a sidebar grouped by layer (`GROUPS`), TeX (`$...$`, `$$...$$` in markdown cells and
docstrings) is converted to MathML at build time (no MathJax download), and pages are written as UTF-8.
Open `_docs/index.html` in a browser.

Usage: python tools/build_docs.py [--out _docs] [--file-re REGEX]
"""

import argparse
import html as htmllib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SITE = 'https://foundation-jets.github.io/foundation_jets/'
BIN = Path(sys.executable).parent

# The sidebar: one group per layer of the package, matched on the notebook's file name (`nbs/NN..._name.ipynb`,
# `tutorial/NN_name.ipynb`). Every page must match exactly one group, or the build fails.
GROUPS = [
    ('Core', r'nbs/(index|0[01][a-z]?_)'),  # home page, core, physics
    ('Data', r'nbs/0[2-5][a-z]?_'),  # jets, detectors, features, data modules, download
    ('Simulation', r'nbs/06[a-z]?_'),  # Pythia jets, events, LArTPC, tracks
    ('Networks', r'nbs/(0[7-9]|1\d)[a-z]?_'),  # points, plots, viewers, toys, nn, tokenizers, models
    ('Training', r'nbs/(2[0-4]|30)[a-z]?_'),  # the harness, classifier, tokenizer, pretraining, generation, metrics
    ('Systems', r'nbs/(2[5-9]|4\d)[a-z]?_'),  # tagging, anomaly, L1, MAE, JEPA, jet pretraining, cli, demo, finetune
    ('Tutorials', r'tutorial/\d+_'),
]


def _group(rel: str) -> str:
    "The sidebar group of a notebook (`rel`: its path from the project root); exactly one must match."
    hits = [g for g, pattern in GROUPS if re.match(pattern, rel)]
    if len(hits) != 1:
        sys.exit(f'build_docs: {rel} matches {len(hits)} sidebar groups {hits} (expected one): edit GROUPS')
    return hits[0]


def _frontmatter(nb: dict) -> dict:
    "The YAML frontmatter nbdev writes into the processed notebook's raw cell (unicode escapes decoded)."
    for c in nb['cells']:
        src = ''.join(c['source'])
        m = re.match(r'\s*---\n(.*?)\n---', src, re.S)
        if c['cell_type'] == 'raw' and m:
            return yaml.safe_load(m.group(1)) or {}
    return {}


def _page_name(nb: dict, path: Path) -> str:
    "Output file name from the processed notebook's frontmatter (nbdev strips the number prefix)."
    return _frontmatter(nb).get('output-file') or re.sub(r'^\d+[a-zA-Z0-9]*_', '', path.stem) + '.html'


def _title(nb: dict, default: str) -> str:
    return str(_frontmatter(nb).get('title', default)).replace('`', '')


def _description(nb: dict) -> str:
    return ' '.join(str(_frontmatter(nb).get('description', '')).split())


# ---- TeX to MathML ---------------------------------------------------------------------------------------------
_FENCE = re.compile(r'^[ \t]*(`{3,}|~{3,})')
_SPAN = re.compile(r'(`+)(.+?)(?<!`)\1(?!`)', re.S)
# pandoc's rules: `$$...$$` display; `$...$` inline when the opening `$` is followed and the closing `$` preceded
# by a non-space and the closing `$` is not followed by a digit; `\$` is a literal dollar
_MATH = re.compile(
    r'(?<!\\)\$\$(?P<display>.+?)\$\$'  # display
    r'|(?<![\\$])\$(?![\s$])(?P<inline>(?:\\.|[^$\\])+?)(?<![\s\\])\$(?!\d)',  # inline
    re.S,
)
# standard TeX that latex2mathml does not know, in an equivalent form it does
_TEX_FIXES = [(re.compile(r'\\(arg)(?![A-Za-z])'), r'\\operatorname{\1}')]
_MARK = 'FJMATH{}Q'
_MARK_RE = re.compile(r'FJMATH(\d+)Q')


class Math:
    "Collects the TeX of a page as MathML, leaving placeholders that markdown rendering keeps as plain text."

    def __init__(self, page: str):
        self.page, self.mathml, self.tex, self.errors = page, [], [], []

    def _convert(self, m: re.Match) -> str:
        from latex2mathml.converter import convert

        display = m.group('display') is not None
        tex = (m.group('display') if display else m.group('inline')).strip()
        if not display and '\n\n' in tex:
            return m.group(0)  # `$` of two paragraphs: not math
        for pattern, repl in _TEX_FIXES:
            tex = pattern.sub(repl, tex)
        try:
            mathml = convert(tex, display='block' if display else 'inline')
        except Exception as e:
            mathml, why = None, f'{type(e).__name__}: {e}'
        if mathml is not None:
            braces = re.sub(r'\\[{}]', '', tex)
            unknown = re.findall(r'>[^<]*(\\[A-Za-z]+)[^<]*<', mathml)
            if braces.count('{') != braces.count('}'):
                mathml, why = None, 'unbalanced braces'
            elif unknown:
                mathml, why = None, f'unknown command {unknown[0]}'
        if mathml is None:
            self.errors.append(f'{self.page}: cannot convert ${tex}$ to MathML ({why})')
            return m.group(0)
        self.mathml.append(mathml)
        self.tex.append(tex)
        return _MARK.format(len(self.mathml) - 1)

    def markdown(self, md: str) -> str:
        "Replace the math of a markdown text by placeholders, leaving fenced code blocks and code spans untouched."
        out, prose, fence = [], [], None
        for line in md.splitlines(keepends=True):
            f = _FENCE.match(line)
            if fence is None and f:
                out.append(self._prose(''.join(prose)))
                prose, fence = [], f.group(1)
                out.append(line)
            elif fence is not None:
                out.append(line)
                if f and f.group(1)[0] == fence[0] and len(f.group(1)) >= len(fence) and not line[f.end() :].strip():
                    fence = None
            else:
                prose.append(line)
        out.append(self._prose(''.join(prose)))
        return ''.join(out)

    def _prose(self, text: str) -> str:
        parts, last = [], 0
        for m in _SPAN.finditer(text):
            parts += [_MATH.sub(self._convert, text[last : m.start()]), m.group(0)]
            last = m.end()
        return ''.join(parts) + _MATH.sub(self._convert, text[last:])

    def html(self, page: str) -> str:
        "Put the MathML in place of the placeholders (in attributes, such as heading ids: the plain TeX)."

        def tag(t: str) -> str:
            return _MARK_RE.sub(lambda m: htmllib.escape(re.sub(r'\W+', '', self.tex[int(m.group(1))])), t)

        def text(t: str) -> str:
            return _MARK_RE.sub(lambda m: self.mathml[int(m.group(1))], t)

        return ''.join(tag(p) if p.startswith('<') else text(p) for p in re.split(r'(<[^>]*>)', page))


# ---- notebooks to pages -------------------------------------------------------------------------------------------
_QUARTO_ATTRS = re.compile(r'\{target="_blank"[^}]*\}')


def _relink(md: str, pages: dict) -> str:
    "Links to the published site and to notebook files become links to the pages of this site."
    md = md.replace(SITE, '')
    for nbname, page in pages.items():
        md = md.replace(nbname, page)
    return md


def _clean_output(o: dict, math: Math, pages: dict) -> dict:
    "Markdown outputs (show_doc): drop Quarto link attributes (`[source](url){target=...}`), relink, TeX to MathML."
    data = o.get('data', {})
    if 'text/markdown' in data:
        md = data['text/markdown']
        md = ''.join(md) if isinstance(md, list) else md
        md = math.markdown(_relink(_QUARTO_ATTRS.sub('', md), pages))
        o = dict(o, data={**data, 'text/markdown': md})
    return o


def _prepare(nb: dict, title: str, description: str, pages: dict, math: Math) -> dict:
    "Apply the Quarto cell options nbconvert does not know: echo false, include false; relink the site; TeX."
    head = f'# {title}\n\n> {description}' if description else f'# {title}'
    cells = [{'cell_type': 'markdown', 'id': 'fj-title', 'metadata': {}, 'source': math.markdown(head)}]
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
            c['outputs'] = [_clean_output(o, math, pages) for o in c.get('outputs', [])]
        else:
            c = dict(c, source=math.markdown(_relink(src, pages)))
        keep = ('cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count', 'attachments')
        c = {k: v for k, v in c.items() if k in keep}
        c['metadata'] = {k: v for k, v in c.get('metadata', {}).items() if k in ('jupyter', 'tags')}
        cells.append(c)
    return dict(nb, cells=cells)


def _tutorial(nb: dict) -> tuple:
    "A tutorial's title and summary come from its first cell (`# Title`, `> summary`), which then loses them."
    first = ''.join(nb['cells'][0]['source'])
    title = re.match(r'#\s+(.+)', first)
    summary = re.search(r'^>\s*(.+)$', first, re.M)
    rest = re.sub(r'^#\s+.+\n?', '', first, count=1)
    rest = re.sub(r'^>\s*.+\n?', '', rest, count=1, flags=re.M).lstrip('\n')
    cells = [dict(nb['cells'][0], source=rest)] + nb['cells'][1:]
    return dict(nb, cells=cells), (title.group(1).strip() if title else ''), (summary.group(1) if summary else '')


def _sidebar(entries: list, current: str) -> str:
    "The sidebar: the pages grouped by layer, in GROUPS order, the current page marked."
    html = ['<nav id="fj-sidebar"><a class="fj-brand" href="index.html">foundation_jets</a>']
    for group, _ in GROUPS:
        items = [(page, title) for g, page, title in entries if g == group]
        if not items:
            continue
        html.append(f'<div class="fj-group"><div class="fj-group-title">{group}</div><ul>')
        for page, title in items:
            here = ' class="fj-current" aria-current="page"' if page == current else ''
            html.append(f'<li><a href="{page}"{here}>{htmllib.escape(title)}</a></li>')
        html.append('</ul></div>')
    return ''.join(html) + '</nav>'


_CSS = """<style>
#fj-sidebar{position:fixed;top:0;left:0;bottom:0;width:16rem;overflow-y:auto;background:#2c3e50;color:#dfe6ee;
  padding:.8rem .9rem 2rem;box-sizing:border-box;font:13px/1.35 system-ui,sans-serif;z-index:9}
#fj-sidebar a{color:#dfe6ee;text-decoration:none}
#fj-sidebar a:hover{color:#fff;text-decoration:underline}
#fj-sidebar .fj-brand{display:block;font-weight:700;font-size:16px;color:#fff;margin-bottom:.6rem}
#fj-sidebar .fj-group-title{margin:.8rem 0 .25rem;font-weight:700;text-transform:uppercase;font-size:11px;
  letter-spacing:.06em;color:#9fb3c8}
#fj-sidebar ul{list-style:none;margin:0;padding:0}
#fj-sidebar li{margin:.15rem 0}
#fj-sidebar a.fj-current{color:#fff;font-weight:700;border-left:3px solid #5dade2;padding-left:.35rem}
main.fj-main{margin-left:16rem}
math[display="block"]{margin:.6em 0;font-size:1.1em}
@media (max-width:800px){#fj-sidebar{position:static;width:auto}main.fj-main{margin-left:0}}
</style>"""

# the lab template, without what a static offline site cannot use: MathJax (the math is MathML already),
# require.js, mermaid and the ipywidgets renderer from a CDN (unpkg; a widget output shows its plain-text fallback,
# and the viewers run in JupyterLab); the sidebar goes in front of <main>
_TEMPLATE = (
    "{%- extends 'index.html.j2' -%}\n"
    '{% block html_head_js_requirejs %}{% endblock html_head_js_requirejs %}\n'
    '{% block jupyter_widgets %}{% endblock jupyter_widgets %}\n'
    '{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}\n'
    '{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}\n'
    '{% block html_head_css %}{% raw %}' + _CSS + '{% endraw %}{% endblock html_head_css %}\n'
    '{% block body_header %}<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">'
    '{{ resources.fj_sidebar }}<main class="fj-main">{% endblock body_header %}\n'
)


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    cfg = Config()
    cfg.TagRemovePreprocessor.enabled = True
    cfg.TagRemovePreprocessor.remove_input_tags = {'remove_input'}
    return HTMLExporter(
        config=cfg,
        template_name='lab',
        template_file='fj_site.html.j2',
        extra_loaders=[DictLoader({'fj_site.html.j2': _TEMPLATE})],
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )


def build(out: Path, file_re: str = r'\.(?:ipynb|qmd)$') -> list:
    if shutil.which('quarto'):
        subprocess.run([str(BIN / 'nbdev-docs')], cwd=ROOT, check=True)
        return sorted((ROOT / '_docs').glob('*.html'))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(ROOT / 'pyproject.toml', tmp)
        shutil.copytree(ROOT / 'nbs', tmp / 'nbs')
        r = subprocess.run([str(BIN / 'nbdev-proc-nbs'), '--file-re', file_re], cwd=tmp, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f'nbdev-proc-nbs failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}')
        return render(tmp / '_proc', out)


def render(proc: Path, out: Path) -> list:
    "Write the pages: the notebooks nbdev processed into `proc`, then the tutorials as committed."
    import nbformat

    # (group, page, title, description, notebook, file name)
    docs = []
    for p in sorted(proc.rglob('*.ipynb')):
        nb = json.loads(p.read_text(encoding='utf-8'))
        rel = 'nbs/' + p.relative_to(proc).as_posix()
        docs.append((_group(rel), _page_name(nb, p), _title(nb, p.stem), _description(nb), nb, p.name))
    for p in sorted((ROOT / 'tutorial').glob('*.ipynb')):
        nb, title, summary = _tutorial(json.loads(p.read_text(encoding='utf-8')))
        docs.append((_group(f'tutorial/{p.name}'), f'tutorial.{p.stem}.html', title or p.stem, summary, nb, p.name))
    pages = [d[1] for d in docs]
    dup = {p for p in pages if pages.count(p) > 1}
    if dup:
        sys.exit(f'build_docs: two notebooks write the same page {sorted(dup)}')
    # notebook file names to pages, the longer (`nbs/...`, `tutorial/...`) first
    links = {f'{d}/{name}': page for _, page, _, _, _, name in docs for d in ('nbs', 'tutorial')}
    links.update({name: page for _, page, _, _, _, name in docs})
    entries = [(g, page, title) for g, page, title, *_ in docs]
    entries.sort(key=lambda e: e[1] != 'index.html')  # the home page first in its group
    exporter = _exporter()
    out.mkdir(parents=True, exist_ok=True)
    html, errors = {}, []
    for _, page, title, description, nb, _ in docs:
        math = Math(page)
        nb = nbformat.reads(json.dumps(_prepare(nb, title, description, links, math)), as_version=4)
        nb.metadata['title'] = title
        body, _ = exporter.from_notebook_node(nb, resources={'fj_sidebar': _sidebar(entries, page)})
        errors += math.errors
        html[page] = math.html(body)
    if errors:
        sys.exit('build_docs: TeX that latex2mathml cannot convert:\n' + '\n'.join(errors))
    written = []
    for page, body in _fix_anchors(html).items():
        (out / page).write_text(body, encoding='utf-8')
        written.append(out / page)
    return written


def _fix_anchors(html: dict) -> dict:
    """nbdev links symbols with Quarto's lower-case anchors (`#tokenvocab`) where nbconvert keeps the case
    (`TokenVocab`), and links methods without a doc of their own (`#transformerstack.new_cache`) and private names:
    point each link at the symbol's doc, else its class's doc, else the top of its page."""
    ids = {page: set(re.findall(r'\bid="([^"]+)"', body)) for page, body in html.items()}
    lower = {page: {i.lower(): i for i in found} for page, found in ids.items()}

    def fix(m: re.Match, page: str) -> str:
        target, fragment = m.group(1) or page, m.group(2)
        if target not in ids or fragment in ids[target]:
            return m.group(0)
        for candidate in (fragment, fragment.split('.')[0]):
            if candidate.lower() in lower[target]:
                return f'href="{m.group(1)}#{lower[target][candidate.lower()]}"'
        return f'href="{target}"'

    href = re.compile(r'href="([\w.-]*\.html|)#([^"]+)"')
    return {page: href.sub(lambda m, p=page: fix(m, p), body) for page, body in html.items()}


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT / '_docs'))
    ap.add_argument('--file-re', default=r'\.(?:ipynb|qmd)$')
    a = ap.parse_args()
    pages = build(Path(a.out), a.file_re)
    print(f'wrote {len(pages)} pages to {a.out}: ' + ', '.join(p.name for p in pages))
