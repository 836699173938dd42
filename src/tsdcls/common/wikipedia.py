"""The one reader of gensim's shortened English Wikipedia dump, shared by the theory check (d)
and the TempScale texts (collapse windows, needle haystacks, long-document retrieval).

Pages come in dump order: main namespace only, redirects and empty pages skipped, markup removed
with gensim's own ``filter_wiki`` (paragraph breaks and ``== headings ==`` kept, so a caller can
split an article into its lead and body or flatten it with ``plain_text``).
"""

from __future__ import annotations

import bz2
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tsdcls.common.assets import AssetMissingError, gensim_test_data
from tsdcls.common.config import ConfigError

GENSIM_WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_EMPHASIS = re.compile(r"'{2,}")  # ''italic'' and '''bold''' quotes, which filter_wiki keeps


@dataclass(frozen=True)
class WikiPage:
    title: str
    text: str  # filter_wiki output: plain text with paragraph breaks and headings


def dump_path(name: str = GENSIM_WIKI_DUMP, key: str | None = None) -> Path:
    """A dump file: a name inside gensim's test data, or a path (``key``: the config key naming it)."""
    path = Path(name)
    if not path.is_absolute():
        path = gensim_test_data() / name
    if path.is_file():
        return path
    if key:  # the user named the file: a config error, not retried
        raise ConfigError(f"config key '{key}': {path} does not exist; name a file in gensim's test data or a path")
    raise AssetMissingError(f"{path} is missing: reinstall gensim (pip install gensim)")


def strip_markup(markup: str) -> str:
    """gensim's ``filter_wiki``: links, templates, tables and tags removed."""
    from gensim.corpora.wikicorpus import filter_wiki

    return filter_wiki(markup)


def strip_emphasis(text: str) -> str:
    return _EMPHASIS.sub("", text)


def plain_text(text: str) -> str:
    """One line of running text: emphasis quotes removed, whitespace runs collapsed."""
    return re.sub(r"\s+", " ", strip_emphasis(text)).strip()


def pages(dump: Path) -> Iterator[WikiPage]:
    """Every main-namespace, non-redirect, non-empty page of ``dump``, markup removed."""
    from gensim.corpora.wikicorpus import extract_pages

    with bz2.open(dump, "rb") as handle:
        for title, markup, _page_id in extract_pages(handle, filter_namespaces=("0",)):
            if not markup or markup.lstrip().lower().startswith("#redirect"):
                continue
            yield WikiPage(title, strip_markup(markup))
