"""The docs build: nbdev's offline processing of every notebook (the smoke test), the static HTML site,
an API doc for every exported symbol, README.md in sync with nbs/index.ipynb, and the site as a real browser
(headless chromium) shows it: math as MathML, unicode as itself, every internal link resolving, the sidebar."""

import importlib
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('docs')
    r = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--out', str(out)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def _page(syms: dict, name: str) -> str:
    "The docs page of a symbol, from nbdev's index (`'core.html#name'`)."
    return syms[name][0].split('#')[0]


def test_docs_site_has_index_and_every_module(site):
    assert (site / 'index.html').exists()
    from foundation_jets._modidx import d

    for mod, syms in d['syms'].items():
        for page in {_page(syms, n) for n in syms}:
            assert (site / page).exists(), f'no docs page {page} for {mod}'


def test_every_export_has_api_doc(site):
    from foundation_jets._modidx import d

    missing = []
    for mod, syms in d['syms'].items():
        module = importlib.import_module(mod)
        for name in getattr(module, '__all__', []):
            key = f'{mod}.{name}'
            if key not in syms:
                continue  # re-exported from another module
            html = (site / _page(syms, key)).read_text()
            if not re.search(rf'<h[2-4] id="{re.escape(name)}"', html):
                missing.append(f'{mod}.{name}')
    assert not missing, f'exported symbols without an API doc: {missing}'


def test_readme_in_sync_with_index():
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


# ---- the site in a real browser -----------------------------------------------------------------------------------
def _chromium() -> str:
    "Debian's chromium; installed with apt when missing (as the Makefile does). Skips only when that is impossible."
    exe = shutil.which('chromium')
    if exe:
        return exe
    cmd = 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'
    if os.geteuid() != 0 or not shutil.which('apt-get'):
        why = 'not root' if shutil.which('apt-get') else 'no apt-get'
    else:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        exe = shutil.which('chromium')
        if exe:
            return exe
        why = f'apt-get failed (rc {r.returncode}): {r.stderr[-500:]}'
    print(f'chromium unavailable and cannot be installed: {why}')
    pytest.skip(f'chromium unavailable and cannot be installed: {why}')


def _browse(chromium: str, profile: Path, *args: str) -> str:
    "Run headless chromium with its own profile (runs in parallel must not share one); returns stdout."
    cmd = [chromium, '--headless', '--no-sandbox', '--disable-gpu', f'--user-data-dir={profile}', *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f'{" ".join(cmd)}: rc {r.returncode}\n{r.stderr[-2000:]}'
    return r.stdout


class _Dom(HTMLParser):
    "What the checks need from a rendered DOM: ids, hrefs, sidebar links, <math> count, and the prose text."

    _code = {'code', 'pre', 'script', 'style', 'math', 'textarea', 'svg'}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.hrefs, self.sidebar, self.prose = set(), [], [], []
        self.math, self.title, self._stack, self._nav = 0, '', [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'):
            self.ids.add(a['id'])
        if tag == 'a' and a.get('name'):
            self.ids.add(a['name'])
        if tag == 'a' and a.get('href') is not None:
            self.hrefs.append(a['href'])
            if self._nav is not None:
                self.sidebar.append(a['href'])
        if tag == 'nav' and a.get('id') == 'fj-sidebar':
            self._nav = len(self._stack)
        self.math += tag == 'math'
        if tag not in _VOID:
            self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self._stack:
            while self._stack.pop() != tag:
                pass
        if self._nav is not None and len(self._stack) <= self._nav:
            self._nav = None

    def handle_data(self, data):
        if self._stack and self._stack[-1] == 'title':
            self.title += data
        if not self._code & set(self._stack):
            self.prose.append(data)


_VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr'}
# TeX left for the reader: pandoc's `$...$` rules (what build_docs converts) and `$$...$$`
_RAW_TEX = re.compile(r'\$\$.+?\$\$|(?<![\\$])\$(?![\s$])[^$\n]+?(?<![\s\\])\$(?!\d)', re.S)
_ESCAPED = re.compile(r'\\u[0-9a-fA-F]{4}')


@pytest.fixture(scope='module')
def browsed(site, tmp_path_factory):
    "Every page of the site, loaded in headless chromium (a small thread pool), as parsed DOMs."
    chromium = _chromium()
    tmp = tmp_path_factory.mktemp('chromium')
    pages = sorted(site.glob('*.html'))

    def dump(i_page):
        i, page = i_page
        dom = _browse(chromium, tmp / f'profile{i % 3}_{i}', '--dump-dom', page.as_uri())
        assert '</html>' in dom, f'{page.name}: chromium returned no DOM'
        parsed = _Dom()
        parsed.feed(dom)
        return page.name, parsed

    with ThreadPoolExecutor(3) as pool:
        return dict(pool.map(dump, enumerate(pages)))


def test_browser_every_page_renders_math_and_unicode(browsed):
    raw, escaped = [], []
    for page, dom in browsed.items():
        prose = ''.join(dom.prose)
        raw += [f'{page}: {m.group(0)[:80]!r}' for m in _RAW_TEX.finditer(prose)]
        escaped += [f'{page}: {m.group(0)}' for m in _ESCAPED.finditer(prose + dom.title)]
    assert not raw, f'TeX left raw outside code in the browser: {raw[:20]}'
    assert not escaped, f'escaped unicode shown as text: {escaped[:20]}'
    for page in ('models.deepsets.html', 'tasks.jetpretrain.html'):
        assert browsed[page].math > 0, f'no <math> element on {page}'
    assert 'α' in ''.join(browsed['demo.html'].prose), 'the demo page does not show the α of OmniJet-α'


def test_browser_internal_links_resolve(site, browsed):
    broken = []
    for page, dom in browsed.items():
        for href in dom.hrefs:
            parts = urlsplit(href)
            if parts.scheme or href.startswith('//') or not href:
                continue
            target = unquote(parts.path) or page
            if not (site / target).is_file():
                broken.append(f'{page}: {href} (no file {target})')
            elif parts.fragment and target.endswith('.html'):
                # a browser matches the fragment as written, then percent-decoded (nbconvert's ids are encoded)
                if not {parts.fragment, unquote(parts.fragment)} & browsed[target].ids:
                    broken.append(f'{page}: {href} (no anchor #{parts.fragment} in {target})')
    assert not broken, f'{len(broken)} broken internal links: {broken[:20]}'


def _build_docs():
    "tools/build_docs.py as a module (its GROUPS table and TeX conversion)."
    import importlib.util

    spec = importlib.util.spec_from_file_location('build_docs', ROOT / 'tools' / 'build_docs.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_browser_sidebar_groups_every_page_once(site, browsed):
    groups = [g for g, _ in _build_docs().GROUPS]
    tutorials = {f'tutorial.{p.stem}.html' for p in (ROOT / 'tutorial').glob('*.ipynb')}
    assert tutorials and tutorials <= set(browsed), f'tutorial pages missing: {sorted(tutorials - set(browsed))}'
    for page, dom in browsed.items():
        brand, *entries = dom.sidebar
        assert brand == 'index.html', f'{page}: the sidebar does not start with the home link'
        assert sorted(entries) == sorted(browsed), f'{page}: the sidebar does not list every page exactly once'
        titles = re.findall(r'class="fj-group-title">([^<]+)<', (site / page).read_text(encoding='utf-8'))
        assert titles == groups, f'{page}: sidebar groups {titles}, expected {groups}'
    tutorial_group = re.search(r'Tutorials</div><ul>(.*?)</ul>', (site / 'index.html').read_text(encoding='utf-8'))
    assert set(re.findall(r'href="([^"]+)"', tutorial_group.group(1))) == tutorials


def test_tex_to_mathml_leaves_code_alone_and_names_failures():
    math = _build_docs().Math('some.page.html')
    md = 'a $x^2$ b `$y$` c\n```python\nz = "$a$"\n```\nd $$\\sum_i p_i$$ costs \\$5 or $10'
    out = math.markdown(md)
    assert '`$y$`' in out and 'z = "$a$"' in out and '\\$5 or $10' in out, out
    assert len(math.mathml) == 2 and 'display="block"' in math.mathml[1] and not math.errors
    assert '<msup><mi>x</mi><mn>2</mn></msup>' in math.html(f'<p>{out}</p>')
    math.markdown('bad $\\notacommand{x}$ and $\\frac{a}{$')
    assert len(math.errors) == 2 and all(e.startswith('some.page.html: cannot convert $') for e in math.errors)
    assert '\\notacommand' in math.errors[0], math.errors


def test_browser_screenshots(site, tmp_path):
    chromium = _chromium()
    for page in ('index.html', 'tutorial.01_tokenization.html'):
        png = tmp_path / page.replace('.html', '.png')
        args = ('--hide-scrollbars', f'--screenshot={png}', '--window-size=1280,2000', (site / page).as_uri())
        _browse(chromium, tmp_path / f'profile-{page}', *args)
        head = png.read_bytes()[:24]
        assert head[:8] == b'\x89PNG\r\n\x1a\n', f'{png} is not a PNG'
        width, height = int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
        assert (width, height) == (1280, 2000), (width, height)
        assert png.stat().st_size > 100_000, f'{png}: {png.stat().st_size} bytes, a near-blank page'


def test_markdown_reflow_keeps_words_math_and_blocks():
    "tools/markdown_lines.py --fix: lines within 120, the same words in order, inline math and code whole."
    sys.path.insert(0, str(ROOT / 'tools'))
    import markdown_lines

    math = r'$\frac{K}{2}\rho\frac{Z}{A} - \frac{\beta^2}{T}$'
    item = '- a list item ' + ' '.join(f'word{i}' for i in range(40)) + f' with {math} and `code with spaces` inside.'
    table = '| ' + ' | '.join(f'column {i}' for i in range(30)) + ' |'
    fence = '```\n' + 'x = 1  # ' + 'y' * 130 + '\n```'
    display = '$$a = b +\n' + 'c ' * 70 + 'd.$$'  # display math over two lines, closed at the end of the second
    after = 'After the formula, ' + 'more ' * 30 + 'prose.'  # prose again: checked and reflowed
    source = '\n'.join(['Intro ' + 'long ' * 30 + 'paragraph.', '', item, table, fence, display, after])
    assert markdown_lines.long_lines(source)  # the check finds the long prose lines ...
    out = markdown_lines.reflow(source)
    assert markdown_lines.long_lines(out) == []  # ... and the reflow shortens every one
    assert out.split() == source.split()  # the same words in the same order
    assert math in out and '`code with spaces`' in out  # never split inside math or code
    assert table in out.split('\n') and fence in out and display in out  # tables, code and display math untouched
    tail = out.split('\n')[out.split('\n').index(display.split('\n')[1]) + 1 :]  # the prose after the formula
    assert len(tail) > 1 and all(len(line) <= 120 for line in tail) and ' '.join(tail).split() == after.split()
    lines = out.split('\n')
    start = lines.index(next(line for line in lines if line.startswith('- a list item')))
    assert lines[start + 1].startswith('  ') and not lines[start + 1].startswith('   ')  # list continuation indent
