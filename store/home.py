"""Where a codirector home keeps things: the SQLite database, blobs and vector indexes.

``--home DIR`` / ``CODIRECTOR_HOME`` (default ``./.codirector``), ``--db URL`` / ``CODIRECTOR_DB``
(default: ``sqlite:///<home>/codirector.db``), ``--blobs URL`` / ``CODIRECTOR_BLOBS`` (default: the
home's ``blobs/``; ``s3://bucket/prefix``, ``gs://...``) and ``--cache DIR`` / ``CODIRECTOR_CACHE``
(this machine's vector-index cache; default: the home). Nothing outside the home is written
except the database, blob store and cache those values point at. These four values are all a
worker on another machine needs (docs/architecture.md §10); only the database and the blobs are shared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".codirector"


@dataclass(frozen=True)
class Home:
    """The folder of one codirector installation and the database URL it uses."""

    root: Path
    db_url: str
    blobs_url: str = ""  # "" = the home's blobs/
    cache_dir: Path | None = None  # None = the home

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None, db: str | None = None,
                blobs: str | os.PathLike[str] | None = None, cache: str | os.PathLike[str] | None = None) -> Home:
        """The home from arguments, then environment variables, then defaults."""
        root = Path(home or os.environ.get("CODIRECTOR_HOME") or DEFAULT_HOME).expanduser().absolute()
        url = db or os.environ.get("CODIRECTOR_DB") or f"sqlite:///{root / 'codirector.db'}"
        blobs_url = os.fspath(blobs or os.environ.get("CODIRECTOR_BLOBS") or root / "blobs")
        if "://" not in blobs_url:
            blobs_url = str(Path(blobs_url).expanduser().absolute())
        cache_dir = Path(cache or os.environ.get("CODIRECTOR_CACHE") or root).expanduser().absolute()
        return cls(root=root, db_url=url, blobs_url=blobs_url, cache_dir=cache_dir)

    @property
    def blobs_dir(self) -> Path:
        """The home's own blob folder (used when no other ``--blobs`` is given)."""
        return self.root / "blobs"

    @property
    def blobs(self) -> str:
        """Where the blobs are: a local path or a URL."""
        return self.blobs_url or str(self.blobs_dir)

    @property
    def cache(self) -> Path:
        """This machine's cache folder (the vector indexes live in its ``vectors/``)."""
        return self.cache_dir or self.root

    @property
    def vectors_dir(self) -> Path:
        return self.cache / "vectors"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    def ensure(self) -> None:
        """Create the home's and the cache's folders (the database is created by migrations, the blob
        store by ``BlobStore.ensure``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.vectors_dir.mkdir(parents=True, exist_ok=True)

    def describe_db(self) -> str:
        """The database URL with any password masked (safe to print and log)."""
        return mask_url(self.db_url)


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        user = creds.split(":", 1)[0]
        creds = f"{user}:***"
    return f"{scheme}://{creds}@{host}"


def file_mode() -> int:
    """The mode a new file gets under this process's umask (``0o666 & ~umask``): what ``open()`` would give.

    ``tempfile.mkstemp`` makes private (0600) files; a file written through one and renamed into place
    gets this mode instead, so every file codirector writes is as readable as the user's umask says."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it the only portable way, and put it back at once
    os.umask(mask)
    return 0o666 & ~mask
