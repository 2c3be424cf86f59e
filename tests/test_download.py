"""foundation_jets.data.download against a real HTTP server on 127.0.0.1.

The server (http.server in a thread, ephemeral port) supports Range requests and can misbehave on
purpose: drop the connection mid-file, ignore Range, redirect, or 404. It logs every request and shuts
itself down after 30 s at most.

Two more fakes serve the real clients: a fake HuggingFace Hub (for huggingface_hub, through its endpoint)
and a fake Google Drive (for gdown): an HTTPS proxy on 127.0.0.1 that answers CONNECT with TLS under a
throw-away certificate for drive.google.com (made with the openssl command), reached through HTTPS_PROXY
and REQUESTS_CA_BUNDLE, so gdown runs unmodified: folder listing, virus-scan confirmation page, quota page."""

import hashlib
import http.server
import io
import json
import os
import re
import tarfile
import threading
import urllib.parse
import warnings
import zipfile
from pathlib import Path

import pytest

from foundation_jets.core import ConfigError
from foundation_jets.data import download as dl
from foundation_jets.data.download import (
    PILARNET_DRIVE_FOLDER,
    PILARNET_REPO,
    STAGING,
    ChecksumError,
    Dataset,
    DownloadError,
    RemoteFile,
    UnsafeArchiveError,
    cli_main,
    download,
    download_pilarnet,
    download_url,
    get_dataset,
    list_datasets,
    register_dataset,
    safe_extract,
)

pytestmark = pytest.mark.timeout(60)

# the md5 sums the JetClass authors publish (get_datasets.py of jet-universe/particle_transformer; checksums.md)
PUBLISHED_JETCLASS_MD5 = {
    'JetClass_Pythia_train_100M_part0.tar': 'de4fd2dca2e68ab3c85d5cfd3bcc65c3',
    'JetClass_Pythia_train_100M_part1.tar': '9722a359c5ef697bea0fbf79bf50f003',
    'JetClass_Pythia_train_100M_part2.tar': '1e9f66cd1f915f9d10e90ae1d7761720',
    'JetClass_Pythia_train_100M_part3.tar': '47348fc8985319fa4806da87500482fa',
    'JetClass_Pythia_train_100M_part4.tar': '6b0ce16bd93b442a8d51914466990279',
    'JetClass_Pythia_train_100M_part5.tar': '416e347512e716de51d392bee327b8e9',
    'JetClass_Pythia_train_100M_part6.tar': 'e9b9c1557b1b39bf0a16e4ab631ae451',
    'JetClass_Pythia_train_100M_part7.tar': '5bfc6cb285ccb7680cefa9ac82ad1a2e',
    'JetClass_Pythia_train_100M_part8.tar': '540c1a0d66dfad78d2b363c5740ccf86',
    'JetClass_Pythia_train_100M_part9.tar': '668f40b3275167ff7104c48317c0ae2a',
    'JetClass_Pythia_val_5M.tar': '7235ccb577ed85023ea3ab4d5e6160cf',
    'JetClass_Pythia_test_20M.tar': '64e5156d26d101adeb43b8388207d767',
}


# ---------------------------------------------------------------- the server
class Handler(http.server.BaseHTTPRequestHandler):
    timeout = 5
    protocol_version = 'HTTP/1.1'

    def log_message(self, *a):
        pass

    def do_GET(self):
        srv, url = self.server, urllib.parse.urlsplit(self.path)
        path = url.path
        srv.log.append((self.path, self.headers.get('Range')))
        self.close_connection = True
        if path in srv.redirects:
            self.send_response(302)
            self.send_header('Location', srv.redirects[path])
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        body = srv.files.get(path)
        if body is None:
            self.send_response(404)
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        start, rng = 0, self.headers.get('Range')
        m = re.fullmatch(r'bytes=(\d+)-', rng or '')
        if m and path not in srv.ignore_range:
            start = int(m[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header('Content-Range', f'bytes */{len(body)}')
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
        else:
            self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(len(body) - start))
        self.end_headers()
        stop = srv.drop_first.pop(path, None)
        if stop is None:
            stop = srv.drop_always.get(path)
        self.wfile.write(body[start:stop] if stop is not None else body[start:])


class Server:
    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        h = self.httpd
        h.files, h.log, h.redirects = {}, [], {}
        h.drop_first, h.drop_always, h.ignore_range = {}, {}, set()
        self.url = f'http://127.0.0.1:{h.server_address[1]}'
        self.thread = threading.Thread(target=h.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        self.timer = threading.Timer(30, h.shutdown)
        self.timer.daemon = True

    def __getattr__(self, name):
        return getattr(self.httpd, name)

    def start(self):
        self.thread.start()
        self.timer.start()
        return self

    def stop(self):
        self.timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def requests(self, path):
        return [r for p, r in self.httpd.log if urllib.parse.urlsplit(p).path == path]


@pytest.fixture
def server():
    s = Server().start()
    yield s
    s.stop()


@pytest.fixture
def dataset():
    "Register throw-away datasets; remove them afterwards."
    names = []

    def make(name, files, **kw):
        register_dataset(Dataset(name, 'test data', tuple(files), citation='none', **kw), replace=True)
        names.append(name)

    yield make
    for n in names:
        dl.REGISTRY.pop(n, None)


def sha256(b):
    return 'sha256:' + hashlib.sha256(b).hexdigest()


def make_tar(entries, mode='w:gz'):
    "entries: (name, bytes) files, (name, '->target') symlinks, (name, '=>target') hard links, (name, 'dir'|'chr')."
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if isinstance(data, bytes):
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            if data.startswith('->'):
                info.type, info.linkname = tarfile.SYMTYPE, data[2:]
            elif data.startswith('=>'):
                info.type, info.linkname = tarfile.LNKTYPE, data[2:]
            elif data == 'dir':
                info.type = tarfile.DIRTYPE
            elif data == 'chr':
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif data == 'fifo':
                info.type = tarfile.FIFOTYPE
            tf.addfile(info)
    return buf.getvalue()


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob('*'))


# ---------------------------------------------------------------- registry
def test_registry_entries():
    names = list_datasets()
    assert names == sorted(names)
    assert {'jetclass', 'top-tagging', 'aspen-open-jets', 'adc2021', 'pilarnet-m', 'trackml'} <= set(names)
    assert {'jetclass-example', 'top-landscape', 'quark-gluon'} <= set(names)
    jc = get_dataset('jetclass')
    assert {f.name: f.checksum for f in jc.files} == {n: f'md5:{v}' for n, v in PUBLISHED_JETCLASS_MD5.items()}
    ex = get_dataset('jetclass-example').files[0]
    assert (ex.name, ex.size, ex.checksum) == (
        'JetClass_example_100k.root',
        136_175_293,
        'sha256:65b3ec7952ed0b18baf2a661a9ffc80173dbf269f4f8dedb1a54d30288ca4e27',
    )
    assert get_dataset('top-landscape').file('TopLandscape.tar').checksum == 'md5:4fca2e47afbf321b0f201da6b804c404'
    assert get_dataset('quark-gluon').file('QuarkGluon.tar').checksum == 'md5:d8dd7f71a7aaaf9f1d2ee3cddef998f9'
    assert [f.name for f in jc.files][-2:] == ['JetClass_Pythia_val_5M.tar', 'JetClass_Pythia_test_20M.tar']
    assert all('zenodo.org/records/6619768/files/' in f.url and f.archive == 'tar' for f in jc.files)
    adc = {f.name: f.url for f in get_dataset('adc2021').files}
    assert '5046389' in adc['background_for_training.h5'] and '5046446' in adc['Ato4l_lepFilter_13TeV.h5']
    assert all(
        'huggingface.co/datasets/DeepLearnPhysics/PILArNet-M/resolve/v1/' in f.url
        for f in get_dataset('pilarnet-m').files
    )
    for ds in dl.REGISTRY.values():
        assert ds.citation and ds.description
        for f in ds.files:
            if f.checksum is None or f.url is None or f.size is None:
                assert f.note, (ds.name, f.name)
    with pytest.raises(ConfigError, match='known datasets: adc2021'):
        get_dataset('nope')


# ---------------------------------------------------------------- downloads
def test_archive_downloads_verifies_and_extracts(server, dataset, tmp_path):
    payload = {'jets/a.csv': b'pt\n500\n', 'jets/b/c.csv': os.urandom(50_000)}
    arc = make_tar([('jets', 'dir'), ('jets/b', 'dir')] + list(payload.items()))
    server.files['/toy/toy.tar.gz'] = arc
    dataset('toy', [RemoteFile('toy.tar.gz', None, size=len(arc), checksum=sha256(arc), archive='tar.gz')])
    got = download('toy', tmp_path, mirror=server.url)
    assert got == [tmp_path / 'toy.tar.gz'] and got[0].read_bytes() == arc
    for name, data in payload.items():
        assert (tmp_path / name).read_bytes() == data
    assert (tmp_path / '.toy.tar.gz.extracted').exists()
    assert not list(tmp_path.glob('*.part'))
    # a second run fetches nothing: the verified file is reused
    n = len(server.log)
    download('toy', tmp_path, mirror=server.url)
    assert len(server.log) == n


def test_truncated_transfer_resumes_with_range(server, tmp_path):
    body = os.urandom(400_000)
    server.files['/big.bin'] = body
    server.drop_first['/big.bin'] = 123_456
    out = download_url(
        server.url + '/big.bin',
        tmp_path / 'big.bin',
        sha256(body),
        size=len(body),
        backoff=0,
        chunk_size=8192,
        progress=False,
    )
    assert server.requests('/big.bin') == [None, 'bytes=123456-']
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest()
    assert tree(tmp_path) == ['big.bin']


def test_resume_from_an_existing_part_file(server, tmp_path):
    "A .part left by an earlier, killed run is continued, not restarted."
    body = os.urandom(100_000)
    server.files['/f.bin'] = body
    (tmp_path / 'f.bin.part').write_bytes(body[:70_000])
    download_url(server.url + '/f.bin', tmp_path / 'f.bin', sha256(body), progress=False)
    assert server.requests('/f.bin') == ['bytes=70000-']
    assert (tmp_path / 'f.bin').read_bytes() == body


def test_server_that_ignores_range_restarts(server, tmp_path):
    body = os.urandom(200_000)
    server.files['/f.bin'] = body
    server.drop_first['/f.bin'] = 50_000
    server.ignore_range.add('/f.bin')
    download_url(
        server.url + '/f.bin', tmp_path / 'f.bin', 'md5:' + hashlib.md5(body).hexdigest(), backoff=0, progress=False
    )
    assert server.requests('/f.bin') == [None, 'bytes=50000-']  # asked for the rest, got a 200 with everything
    assert (tmp_path / 'f.bin').read_bytes() == body


def test_complete_part_file_gets_416_and_is_kept(server, tmp_path):
    body = os.urandom(10_000)
    server.files['/f.bin'] = body
    (tmp_path / 'f.bin.part').write_bytes(body)
    download_url(server.url + '/f.bin', tmp_path / 'f.bin', sha256(body), progress=False)  # size unknown: ask
    assert server.requests('/f.bin') == ['bytes=10000-']
    assert (tmp_path / 'f.bin').read_bytes() == body


def test_redirect_keeps_the_range_header(server, tmp_path):
    body = os.urandom(60_000)
    server.files['/real.bin'] = body
    server.redirects['/moved.bin'] = '/real.bin'
    server.drop_first['/real.bin'] = 20_000
    download_url(server.url + '/moved.bin', tmp_path / 'x.bin', sha256(body), backoff=0, progress=False)
    assert server.requests('/real.bin') == [None, 'bytes=20000-']
    assert (tmp_path / 'x.bin').read_bytes() == body


def test_corrupted_file_fails_its_checksum(server, tmp_path):
    good, bad = b'A' * 5000, b'A' * 4999 + b'B'
    server.files['/data.h5'] = bad
    with pytest.raises(ChecksumError) as e:
        download_url(server.url + '/data.h5', tmp_path / 'data.h5', sha256(good), progress=False)
    msg = str(e.value)
    assert 'data.h5' in msg and hashlib.sha256(good).hexdigest() in msg and hashlib.sha256(bad).hexdigest() in msg
    assert tree(tmp_path) == []  # neither data.h5 nor data.h5.part


def test_wrong_size_fails_and_is_not_kept(server, tmp_path):
    server.files['/f.bin'] = b'x' * 100
    with pytest.raises(DownloadError, match='expected 120 bytes, got 100'):
        download_url(server.url + '/f.bin', tmp_path / 'f.bin', size=120, progress=False)
    assert tree(tmp_path) == []


def test_unverified_download_prints_its_sha256_as_a_plain_line(server, tmp_path, capsys):
    server.files['/f.bin'] = b'hello'
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a UserWarning (with source lines) would fail here
        download_url(server.url + '/f.bin', tmp_path / 'f.bin', progress=False)
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f'f.bin: no published checksum; sha256 {hashlib.sha256(b"hello").hexdigest()} '
        '(recorded in .f.bin.sha256, checked on every run)'
    ]
    assert (tmp_path / 'f.bin').read_bytes() == b'hello'


def test_completed_file_corrupted_later_fails_every_run(server, dataset, tmp_path, capsys):
    "A file verified at its download and changed afterwards is refused (and kept), registered checksum or not."
    body = os.urandom(20_000)
    server.files['/sealed/a.bin'] = server.files['/sealed/b.bin'] = body
    dataset('sealed', [RemoteFile('a.bin', None, size=len(body), checksum=sha256(body)), RemoteFile('b.bin', None)])
    args = ['sealed', '--to', str(tmp_path), '--mirror', server.url, '--quiet']
    assert cli_main(args) == 0
    assert cli_main(args) == 0  # unchanged: verified again, fetched nothing
    assert len(server.log) == 2
    capsys.readouterr()
    for name, damage in (('a.bin', 'truncate'), ('a.bin', 'flip'), ('b.bin', 'truncate'), ('b.bin', 'flip')):
        f = tmp_path / name
        f.write_bytes(body[:-1] if damage == 'truncate' else body[:-1] + bytes([body[-1] ^ 1]))
        assert cli_main(args) == 1, (name, damage)
        err = capsys.readouterr().err
        assert f'{name}: ' in err and 'changed or was truncated after its download' in err, err
        assert f.exists()  # kept: it may be the only copy
        f.write_bytes(body)
    assert cli_main(args) == 0
    assert len(server.log) == 2


def test_verify_refuses_files_without_a_published_checksum(server, dataset, tmp_path, capsys):
    body = b'payload'
    server.files['/strict/a.bin'] = server.files['/strict/b.bin'] = body
    dataset('strict', [RemoteFile('a.bin', None, checksum=sha256(body)), RemoteFile('b.bin', None)])
    base = ['strict', '--to', str(tmp_path), '--mirror', server.url, '--quiet', '--verify']
    assert cli_main(base) == 2
    err = capsys.readouterr().err
    assert '--verify' in err and 'b.bin' in err and 'a.bin' not in err.split('checksum for')[1]
    assert server.log == [] and tree(tmp_path) == []
    assert cli_main([*base, '--files', 'a.bin']) == 0
    assert (tmp_path / 'a.bin').read_bytes() == body


def test_bad_mirror_and_unwritable_target_name_the_option(tmp_path, capsys):
    for args, words in (
        (
            ['jetclass-example', '--to', str(tmp_path), '--mirror', 'notaurl'],
            "--mirror (or $FJ_DOWNLOAD_MIRROR) 'notaurl'",
        ),
        (['jetclass-example', '--to', '/proc/x'], "--to '/proc/x': is not writable"),
        (['jetclass-example', '--to', str(tmp_path / 'f' / 'x')], '--to'),
    ):
        (tmp_path / 'f').write_text('a file, not a folder')
        assert cli_main(args) == 2, args
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err


def test_stale_extraction_folder_is_removed_by_a_rerun(tmp_path):
    "A staging folder left by a run killed with -9 (its pid is gone) is removed when the archive is extracted again."
    import subprocess
    import sys

    from foundation_jets.core import temporary_prefix

    arc = tmp_path / 'a.tar.gz'
    arc.write_bytes(make_tar([('d/x.txt', b'x')]))
    dead = int(subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True).stdout)
    stale = tmp_path / 'out' / (temporary_prefix(arc).replace(f'.{os.getpid()}.', f'.{dead}.') + 'abc123.extracting')
    (stale / 'd').mkdir(parents=True)
    (stale / 'd' / 'half.txt').write_bytes(b'half')
    safe_extract(arc, tmp_path / 'out')
    assert tree(tmp_path / 'out') == ['d', 'd/x.txt']


def test_interrupted_extraction_leaves_no_staging_folder(tmp_path, monkeypatch):
    arc = tmp_path / 'a.tar'
    arc.write_bytes(make_tar([('d/x.txt', b'x'), ('d/y.txt', b'y')], 'w'))
    real, calls = dl._write_member, []

    def ctrl_c_on_second(*a):
        calls.append(a)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(dl, '_write_member', ctrl_c_on_second)
    with pytest.raises(KeyboardInterrupt):
        safe_extract(arc, tmp_path / 'out')
    assert tree(tmp_path / 'out') == []


def test_404_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match='HTTP 404'):
        download_url(server.url + '/missing.bin', tmp_path / 'm.bin', progress=False)
    assert len(server.requests('/missing.bin')) == 1


def test_gives_up_after_retries_and_keeps_the_part(server, tmp_path):
    server.files['/f.bin'] = os.urandom(10_000)
    server.drop_always['/f.bin'] = 0  # every answer is headers and no body
    with pytest.raises(DownloadError, match='gave up after 2 retries'):
        download_url(server.url + '/f.bin', tmp_path / 'f.bin', retries=2, backoff=0, progress=False)
    assert len(server.requests('/f.bin')) == 3
    assert not (tmp_path / 'f.bin').exists()


# ---------------------------------------------------------------- archives
@pytest.mark.parametrize(
    'entries, words',
    [
        ([('ok.txt', b'1'), ('../evil', b'x')], "'../evil'"),
        ([('a/../../evil', b'x')], "path contains '..'"),
        ([('/tmp/fj_abs_evil', b'x')], 'absolute path'),
        ([('etc', '->/etc')], "symlink to the absolute path '/etc'"),
        ([('etc', '->/etc'), ('etc/passwd', b'x')], "symlink to the absolute path '/etc'"),
        ([('up', '->../..'), ('up/evil', b'x')], 'points outside'),
        ([('sub', 'dir'), ('sub/up', '->../../evil')], 'points outside'),
        ([('hard', '=>../evil')], "path contains '..'"),
        ([('hard', '=>/etc/passwd')], 'absolute path'),
        ([('null', 'chr')], 'device file'),
        ([('pipe', 'fifo')], 'device file'),
    ],
)
def test_malicious_tar_is_rejected(tmp_path, entries, words):
    arc = tmp_path / 'bad.tar'
    arc.write_bytes(make_tar(entries, 'w'))
    target = tmp_path / 'out' / 'target'
    before = tree(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=re.escape(words)) as e:
        safe_extract(arc, target)
    assert 'bad.tar' in str(e.value)
    assert tree(target) == []
    assert sorted(set(tree(tmp_path)) - {'out', 'out/target'}) == before
    assert not Path('/tmp/fj_abs_evil').exists()


def test_link_chain_cannot_escape(tmp_path):
    "Each link passes the name check, but together they would leave the target: refused at write time."
    arc = tmp_path / 'chain.tar'
    # 'a' -> 'b/..'  is inside; then 'b' -> '..' would make a/.. escape: refused by the lexical check of 'b'
    arc.write_bytes(make_tar([('b', 'dir'), ('a', '->b/..'), ('c', '->a/..')], 'w'))
    with pytest.raises(UnsafeArchiveError, match="'c'"):
        safe_extract(arc, tmp_path / 't')
    assert tree(tmp_path / 't') == []


def test_safe_links_are_extracted(tmp_path):
    arc = tmp_path / 'ok.tar.gz'
    arc.write_bytes(make_tar([('d/f.txt', b'data'), ('d/sym', '->f.txt'), ('d/hard', '=>d/f.txt')]))
    safe_extract(arc, tmp_path / 't')
    assert os.readlink(tmp_path / 't/d/sym') == 'f.txt'
    assert (tmp_path / 't/d/hard').read_bytes() == b'data' and not (tmp_path / 't/d/hard').is_symlink()


def test_zip_extraction_and_rejection(tmp_path):
    ok = tmp_path / 'ok.zip'
    with zipfile.ZipFile(ok, 'w') as z:
        z.writestr('event000001000-hits.csv', 'hit_id,x\n1,2.5\n')
    safe_extract(ok, tmp_path / 't')
    assert (tmp_path / 't/event000001000-hits.csv').read_text() == 'hit_id,x\n1,2.5\n'
    for name in ('../evil.csv', '/tmp/fj_zip_evil.csv'):
        bad = tmp_path / 'bad.zip'
        with zipfile.ZipFile(bad, 'w') as z:
            z.writestr(name, 'x')
        with pytest.raises(UnsafeArchiveError, match=re.escape(name)):
            safe_extract(bad, tmp_path / 'u')
    link = tmp_path / 'link.zip'
    with zipfile.ZipFile(link, 'w') as z:
        info = zipfile.ZipInfo('etc')
        info.external_attr = 0o120777 << 16
        z.writestr(info, '/etc')
    with pytest.raises(UnsafeArchiveError, match='symlink'):
        safe_extract(link, tmp_path / 'v')
    assert not (tmp_path / 'evil.csv').exists() and not Path('/tmp/fj_zip_evil.csv').exists()
    assert not (tmp_path / 'v' / 'etc').exists()


def test_archive_is_rejected_through_download(server, dataset, tmp_path):
    arc = make_tar([('../evil', b'x')])
    server.files['/evil/evil.tar.gz'] = arc
    dataset('evil', [RemoteFile('evil.tar.gz', None, checksum=sha256(arc), archive='tar.gz')])
    with pytest.raises(UnsafeArchiveError, match="'../evil'"):
        download('evil', tmp_path / 'to', mirror=server.url)
    assert not (tmp_path / 'evil').exists()
    assert not (tmp_path / 'to' / '.evil.tar.gz.extracted').exists()


# ---------------------------------------------------------------- command line
def test_cli_end_to_end_with_mirror_env(server, dataset, tmp_path, monkeypatch, capsys):
    arc = make_tar([('train/x.txt', b'123')])
    server.files['/toy2/part0.tar.gz'] = arc
    server.drop_first['/toy2/part0.tar.gz'] = len(arc) // 2
    dataset(
        'toy2',
        [RemoteFile('part0.tar.gz', 'http://unreachable.invalid/part0.tar.gz', checksum=sha256(arc), archive='tar.gz')],
    )
    monkeypatch.setenv('FJ_DOWNLOAD_MIRROR', server.url)
    monkeypatch.setattr(dl.time, 'sleep', lambda s: None)
    assert cli_main(['toy2', '--to', str(tmp_path), '--quiet']) == 0
    assert (tmp_path / 'train/x.txt').read_bytes() == b'123'
    assert server.requests('/toy2/part0.tar.gz') == [None, f'bytes={len(arc) // 2}-']
    assert str(tmp_path / 'part0.tar.gz') in capsys.readouterr().out


def test_cli_files_subset_and_real_entry_through_mirror(server, tmp_path, capsys):
    "A real registry entry without a public URL (top-tagging) works through --mirror."
    server.files['/top-tagging/val.h5'] = b'\x89HDF fake'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert cli_main(['top-tagging', '--to', str(tmp_path), '--files', 'val.h5', '--mirror', server.url + '/']) == 0
    assert tree(tmp_path) == ['.val.h5.sha256', 'val.h5']


def test_cli_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv('FJ_DOWNLOAD_MIRROR', raising=False)
    assert cli_main(['--list']) == 0
    assert 'jetclass' in capsys.readouterr().out
    assert cli_main(['jetclass', '--list']) == 0
    assert 'JetClass_Pythia_val_5M.tar' in capsys.readouterr().out
    assert cli_main([]) == 2
    assert 'give a dataset NAME' in capsys.readouterr().err
    assert cli_main(['jetclass']) == 2  # no --to
    capsys.readouterr()
    assert cli_main(['no-such-set', '--to', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'no-such-set'" in err and 'jetclass' in err and 'pilarnet-m' in err
    assert cli_main(['trackml', '--to', str(tmp_path)]) == 2  # no URL, no mirror
    assert 'FJ_DOWNLOAD_MIRROR' in capsys.readouterr().err
    assert cli_main(['trackml', '--to', str(tmp_path), '--files', 'nope.zip', '--mirror', 'http://127.0.0.1:9']) == 2
    assert "no file 'nope.zip'" in capsys.readouterr().err
    assert cli_main(['aspen-open-jets', '--to', str(tmp_path), '--files', '../escape.h5']) == 2
    assert "without '..'" in capsys.readouterr().err
    assert cli_main(['--frobnicate']) == 2
    assert cli_main(['--help']) == 0
    assert tree(tmp_path) == []


def test_cli_download_failure_exits_1(server, tmp_path, capsys):
    assert (
        cli_main(
            [
                'adc2021',
                '--to',
                str(tmp_path),
                '--files',
                'background_for_training.h5',
                '--mirror',
                server.url,
                '--retries',
                '0',
            ]
        )
        == 1
    )
    assert 'HTTP 404' in capsys.readouterr().err


# ---------------------------------------------------------------- pilarnet: fake HuggingFace Hub
class HubHandler(http.server.BaseHTTPRequestHandler):
    "The routes huggingface_hub uses: the revision's file list, and resolve/ (HEAD and GET, with Range)."

    protocol_version = 'HTTP/1.1'
    timeout = 5

    def log_message(self, *a):
        pass

    def send(self, code, body=b'', headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Connection', 'close')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        srv, path = self.server, urllib.parse.urlsplit(self.path).path
        srv.log.append((self.command, path, self.headers.get('Range')))
        self.close_connection = True
        api = f'/api/datasets/{PILARNET_REPO}/revision/'
        if path.startswith(api):
            if path[len(api) :] not in srv.revisions:
                return self.send(404, b'{"error": "Invalid rev id"}', [('X-Error-Code', 'RevisionNotFound')])
            siblings = [
                {
                    'rfilename': n,
                    'size': len(b),
                    'lfs': {'size': len(b), 'sha256': srv.sha.get(n, sha256(b)[7:]), 'pointerSize': 1},
                }
                for n, b in srv.files.items()
            ]
            body = json.dumps({'id': PILARNET_REPO, 'sha': srv.commit, 'siblings': siblings}).encode()
            return self.send(200, body, [('Content-Type', 'application/json')])
        prefix = f'/datasets/{PILARNET_REPO}/resolve/{srv.commit}/'
        name = urllib.parse.unquote(path[len(prefix) :]) if path.startswith(prefix) else None
        if name not in srv.files:
            return self.send(404, b'{"error": "Entry not found"}', [('X-Error-Code', 'EntryNotFound')])
        body = srv.files[name]
        headers = [('X-Repo-Commit', srv.commit), ('ETag', f'"{sha256(body)[7:]}"'), ('Accept-Ranges', 'bytes')]
        m = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')
        if self.command == 'HEAD' or m is None:
            code, start = 200, 0
        else:
            code, start = 206, int(m[1])
            headers.append(('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}'))
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header('Content-Length', str(len(body) - start))
        self.send_header('Connection', 'close')
        self.end_headers()
        if self.command == 'GET':
            stop = srv.drop.get(name)  # send only up to this byte, then close
            self.wfile.write(body[start:stop])


@pytest.fixture
def hub():
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), HubHandler)
    httpd.daemon_threads, httpd.log, httpd.drop, httpd.sha = True, [], {}, {}  # sha: name -> listed sha256
    httpd.revisions, httpd.commit = ('v1',), 'ab12' * 10
    httpd.files = {'train/generic_v2_300_v1.h5': os.urandom(300_000), 'val/generic_v2_50_v1.h5': os.urandom(50_000)}
    httpd.url = f'http://127.0.0.1:{httpd.server_address[1]}'
    t = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    t.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_pilarnet_huggingface_cli_end_to_end(hub, tmp_path, capsys):
    args = ['pilarnet', '--to', str(tmp_path), '--endpoint', hub.url, '--quiet']
    assert cli_main(args) == 0
    for name, body in hub.files.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).digest() == hashlib.sha256(body).digest()
    assert tree(tmp_path) == ['train', 'train/generic_v2_300_v1.h5', 'val', 'val/generic_v2_50_v1.h5']
    assert capsys.readouterr().out.split() == [str(tmp_path / n) for n in hub.files]
    n = len(hub.log)
    assert cli_main(args + ['--verify']) == 0  # verified on disk against the Hub's sha256; nothing fetched
    assert [p for _, p, _ in hub.log[n:]] == [f'/api/datasets/{PILARNET_REPO}/revision/v1']
    (tmp_path / 'val/generic_v2_50_v1.h5').write_bytes(b'damaged')
    assert cli_main(args) == 1
    assert 'val/generic_v2_50_v1.h5: size checksum mismatch' in capsys.readouterr().err


def test_pilarnet_huggingface_file_not_matching_its_published_sha256(hub, tmp_path, capsys):
    name = 'val/generic_v2_50_v1.h5'
    hub.sha[name] = hashlib.sha256(b'the published bytes').hexdigest()
    assert cli_main(['pilarnet', '--to', str(tmp_path), '--endpoint', hub.url, '--quiet', '--files', 'val/*']) == 1
    err = capsys.readouterr().err
    assert f'{name}: sha256 checksum mismatch: expected {hub.sha[name]}' in err and len(err.splitlines()) == 1, err
    assert [p for p in tree(tmp_path) if p.endswith('.h5')] == []  # neither under its final name nor in staging


def test_pilarnet_huggingface_files_patterns(hub, tmp_path, capsys):
    got = download_pilarnet(tmp_path, files=['val/*'], endpoint=hub.url, progress=False)
    assert got == [tmp_path / 'val/generic_v2_50_v1.h5']
    assert not [p for _, p, _ in hub.log if 'train' in p]
    with pytest.raises(ConfigError, match=r"no file matches 'test/\*'; the release has train/generic_v2_300_v1.h5"):
        download_pilarnet(tmp_path, files=['val/*', 'test/*'], endpoint=hub.url)


def test_pilarnet_huggingface_interrupted_transfer(hub, tmp_path, capsys, monkeypatch):
    "A transfer that keeps dropping is resumed with Range within the run (huggingface_hub retries), then fails with"
    " one line naming the file and leaves nothing under the final name; the next run fetches it whole."
    from huggingface_hub import constants

    monkeypatch.setattr('time.sleep', lambda s: None)  # huggingface_hub's retry back-off
    monkeypatch.setattr(constants, 'DOWNLOAD_CHUNK_SIZE', 1 << 14)  # it resumes at whole chunks (10 MB by default)
    name = 'train/generic_v2_300_v1.h5'
    hub.drop[name] = 120_000
    args = ['pilarnet', '--to', str(tmp_path), '--endpoint', hub.url, '--quiet', '--files', 'train/*']
    assert cli_main(args) == 1
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith('fj download')]
    assert len(ours) == 1 and f"PILArNet-M v1 (huggingface), file '{name}': peer closed" in ours[0], ours
    ranges = [r for m, p, r in hub.log if m == 'GET' and p.endswith(name)]
    assert ranges[0] is None and set(ranges[1:]) == {f'bytes={120_000 // (1 << 14) * (1 << 14)}-'}, ranges
    assert not (tmp_path / name).exists()
    assert [p for p in tree(tmp_path) if p.endswith(('.h5', '.incomplete'))] == []  # huggingface_hub drops partials
    del hub.drop[name]
    assert cli_main(args) == 0
    assert (tmp_path / name).read_bytes() == hub.files[name]
    assert not (tmp_path / STAGING).exists()


def test_pilarnet_huggingface_bad_revision_and_names(hub, tmp_path, capsys):
    hub.revisions = ('v1',)
    assert cli_main(['pilarnet', '--to', str(tmp_path), '--endpoint', hub.url, '--revision', 'v2']) == 1
    err = capsys.readouterr().err
    assert 'PILArNet-M v2 (huggingface): listing the revision failed' in err and len(err.splitlines()) == 1
    assert cli_main(['pilarnet', '--to', str(tmp_path), '--revision', 'v3']) == 2
    assert "not 'v3'" in capsys.readouterr().err
    hub.files = {'../evil.h5': b'x'}
    with pytest.raises(DownloadError, match="refusing a listed file"):
        download_pilarnet(tmp_path, endpoint=hub.url)
    assert tree(tmp_path) == [] and not (tmp_path.parent / 'evil.h5').exists()


# ---------------------------------------------------------------- pilarnet: fake Google Drive for gdown
FILE_IDS = {'train/generic_v2_300_v1.h5': 'T' * 33, 'val/generic_v2_50_v1.h5': 'V' * 33}
TRAIN_FOLDER, VAL_FOLDER = 'f' * 33, 'g' * 33


class DriveHandler(http.server.BaseHTTPRequestHandler):
    "An HTTPS proxy that terminates TLS itself and plays drive.google.com and drive.usercontent.google.com."

    protocol_version = 'HTTP/1.1'
    timeout = 5

    def log_message(self, *a):
        pass

    def do_CONNECT(self):
        self.send_response(200, 'Connection established')
        self.end_headers()
        self.connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        self.rfile, self.wfile = self.connection.makefile('rb'), self.connection.makefile('wb')
        self.host = self.path.split(':')[0]
        self.close_connection = False  # urllib3 sends CONNECT as HTTP/1.0: keep serving the tunnel

    def send(self, code, body=b'', headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv, url = self.server, urllib.parse.urlsplit(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        srv.log.append((getattr(self, 'host', None), url.path, q, self.headers.get('Range')))
        html = [('Content-Type', 'text/html; charset=utf-8')]
        if url.path == '/embeddedfolderview':
            folders = {
                PILARNET_DRIVE_FOLDER: [('folders', TRAIN_FOLDER, 'train'), ('folders', VAL_FOLDER, 'val')],
                TRAIN_FOLDER: [('file', FILE_IDS['train/generic_v2_300_v1.h5'], 'generic_v2_300_v1.h5')],
                VAL_FOLDER: [('file', FILE_IDS['val/generic_v2_50_v1.h5'], 'generic_v2_50_v1.h5')],
            }
            links = ''.join(
                f'<a href="https://drive.google.com/drive/folders/{i}">{n}</a>'
                if kind == 'folders'
                else f'<a href="https://drive.google.com/file/d/{i}/view">{n}</a>'
                for kind, i, n in folders.get(q.get('id'), [])
            )
            title = {TRAIN_FOLDER: 'train', VAL_FOLDER: 'val'}.get(q.get('id'), 'PILArNet-M')  # the folder's name
            page = f'<html><head><title>{title}</title></head><body>{links}</body></html>'
            return self.send(200, page.encode(), html)
        name = srv.by_id.get(q.get('id'))
        if url.path == '/uc' and name is not None:  # the virus-scan warning page, or the quota page
            if name in srv.quota:
                page = '<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently.</p>'
            else:
                page = (
                    '<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
                    f'<input type="hidden" name="id" value="{q["id"]}"><input type="hidden" name="confirm" value="t">'
                    '<input type="hidden" name="uuid" value="u-1"></form>'
                )
            return self.send(200, f'<html><body>{page}</body></html>'.encode(), html)
        if url.path == '/download' and name is not None and q.get('confirm') == 't':
            body, start = srv.files[name], 0
            m = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')
            self.send_response(206 if m else 200)
            if m:
                start = int(m[1])
                self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
            self.send_header('Content-Type', 'application/octet-stream')
            self.send_header('Content-Disposition', f'attachment; filename="{name.split("/")[-1]}"')
            self.send_header('Content-Length', str(len(body) - start))
            self.send_header('Connection', 'close')
            self.end_headers()
            self.wfile.write(body[start : srv.drop.get(name)])
            self.close_connection = True
            return
        self.send(404)


@pytest.fixture
def drive(tmp_path_factory, monkeypatch):
    import importlib
    import shutil
    import ssl
    import subprocess

    if shutil.which('openssl') is None:
        pytest.skip('the fake Google Drive needs the openssl command to make its certificate')
    d = tmp_path_factory.mktemp('drive')
    hosts = 'DNS:drive.google.com,DNS:drive.usercontent.google.com,DNS:docs.google.com'
    subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=drive.google.com']
        + ['-keyout', str(d / 'key.pem'), '-out', str(d / 'cert.pem'), '-addext', f'subjectAltName={hosts}'],
        check=True,
        capture_output=True,
    )
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), DriveHandler)
    httpd.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    httpd.tls.load_cert_chain(d / 'cert.pem', d / 'key.pem')
    httpd.daemon_threads, httpd.log, httpd.drop, httpd.quota = True, [], {}, set()
    httpd.files = {n: os.urandom(200_000 if n.startswith('train') else 40_000) for n in FILE_IDS}
    httpd.by_id = {i: n for n, i in FILE_IDS.items()}
    threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()
    monkeypatch.setenv('HTTPS_PROXY', f'http://127.0.0.1:{httpd.server_address[1]}')
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', str(d / 'cert.pem'))
    for var in ('NO_PROXY', 'no_proxy', 'https_proxy', 'CURL_CA_BUNDLE'):
        monkeypatch.delenv(var, raising=False)
    gdown_download = importlib.import_module('gdown.download')  # the module; `gdown.download` is the function
    monkeypatch.setattr(gdown_download, 'DEFAULT_COOKIES_FILE', str(d / 'cookies.txt'))
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_gdrive_file_goes_through_the_confirmation_page(drive, tmp_path):
    name = 'val/generic_v2_50_v1.h5'
    body = drive.files[name]
    url = f'https://drive.google.com/uc?export=download&id={FILE_IDS[name]}'
    download_url(url, tmp_path / 'f.h5', sha256(body), gdrive=True, progress=False)
    assert (tmp_path / 'f.h5').read_bytes() == body and tree(tmp_path) == ['f.h5']
    hosts_paths = [(h, p, q.get('confirm')) for h, p, q, _ in drive.log]
    assert hosts_paths == [('drive.google.com', '/uc', None), ('drive.usercontent.google.com', '/download', 't')]


def test_gdrive_quota_page_is_one_line_naming_the_file(drive, tmp_path):
    name = 'val/generic_v2_50_v1.h5'
    drive.quota.add(name)
    with pytest.raises(DownloadError) as e:
        download_url(FILE_IDS[name], tmp_path / 'f.h5', gdrive=True, progress=False)
    assert 'f.h5: ' in str(e.value) and 'Too many users have viewed' in str(e.value) and '\n' not in str(e.value)
    assert not (tmp_path / 'f.h5').exists()


def test_pilarnet_drive_cli_end_to_end(drive, tmp_path, capsys):
    args = ['pilarnet', '--source', 'drive', '--to', str(tmp_path), '--quiet']
    assert cli_main(args) == 0
    for name, body in drive.files.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).digest() == hashlib.sha256(body).digest()
    assert [p for p in tree(tmp_path) if p.endswith('.h5')] == sorted(drive.files)
    assert not (tmp_path / STAGING).exists()
    err = capsys.readouterr().err
    assert 'no published checksum; sha256 ' + hashlib.sha256(drive.files['val/generic_v2_50_v1.h5']).hexdigest() in err
    n = len(drive.log)
    assert cli_main(args + ['--files', 'val/*']) == 0  # on disk: checked against the recorded sha256, not fetched
    assert [p for _, p, _, _ in drive.log[n:]] == ['/embeddedfolderview'] * 3
    assert cli_main(args + ['--verify']) == 2
    assert 'publishes no checksums' in capsys.readouterr().err


def test_pilarnet_drive_interrupted_transfer_resumes(drive, tmp_path, capsys, monkeypatch):
    import importlib

    gdown_download = importlib.import_module('gdown.download')
    monkeypatch.setattr(gdown_download, '_wait_or_cancel', lambda **kw: None)  # gdown's retry back-off
    monkeypatch.setattr(gdown_download, 'CHUNK_SIZE', 1 << 14)  # it keeps whole chunks only (512 kB by default)
    kept = 70_000 // (1 << 14) * (1 << 14)
    name = 'train/generic_v2_300_v1.h5'
    drive.drop[name] = 70_000
    args = ['pilarnet', '--source', 'drive', '--to', str(tmp_path), '--quiet', '--files', 'train/*', '--retries', '1']
    assert cli_main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"PILArNet-M v1 (drive), file '{name}'" in err, err
    assert not (tmp_path / name).exists()
    partial = [p for p in tree(tmp_path) if p.endswith('.part')]
    assert len(partial) == 1 and partial[0].startswith(f'{STAGING}/drive/train/'), partial
    assert (tmp_path / partial[0]).read_bytes() == drive.files[name][:kept]
    del drive.drop[name]
    n = len(drive.log)
    assert cli_main(args) == 0
    assert (tmp_path / name).read_bytes() == drive.files[name]
    assert [r for _, p, _, r in drive.log[n:] if p == '/download'] == [None, f'bytes={kept}-']
    assert not (tmp_path / STAGING).exists()
