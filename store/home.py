"""Where a codirector home keeps things: the SQLite database, blobs and vector indexes.

``--home DIR`` / ``CODIRECTOR_HOME`` (default ``./.codirector``) and ``--db URL`` /
``CODIRECTOR_DB`` (default: ``sqlite:///<home>/codirector.db``). Nothing outside the home is
written except the database a URL points at.
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

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None, db: str | None = None) -> Home:
        """The home from arguments, then environment variables, then defaults."""
        root = Path(home or os.environ.get("CODIRECTOR_HOME") or DEFAULT_HOME).expanduser().absolute()
        url = db or os.environ.get("CODIRECTOR_DB") or f"sqlite:///{root / 'codirector.db'}"
        return cls(root=root, db_url=url)

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    @property
    def vectors_dir(self) -> Path:
        return self.root / "vectors"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    def ensure(self) -> None:
        """Create the home's folders (the database is created by migrations)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.blobs_dir.mkdir(exist_ok=True)
        self.vectors_dir.mkdir(exist_ok=True)

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
