"""Content-addressed blob stores: images, clips, embeddings and large model responses.

One small interface, ``BlobStore`` (``put``, ``get``, ``exists``, ``check``, ``digests``,
``inventory``, ``delete``, ``describe``, ``ensure``), two implementations chosen by URL in one factory, ``open_blobs``:
- a plain path or ``file://`` URL: ``LocalBlobStore``, files under ``root/ab/cdef...``;
- ``s3://bucket/prefix``, ``gs://bucket/prefix`` (any fsspec protocol): ``FsspecBlobStore``, the
  same key layout under the prefix. s3fs/gcsfs are extras, imported on first use only, so commands
  that never touch a remote blob (queries, the demo) never import them.

Invariants:
- A blob's name is the sha256 of its bytes. ``put`` of a digest already stored writes nothing;
  ``get`` re-hashes what it read and raises ``IntegrityViolation`` if it is missing or altered.
- A blob appears under its name complete or not at all: locally a temp file in the same folder,
  fsync, atomic rename, fsync of the folder; in an object store a single PUT (atomic by the
  store's own contract). Writers put a blob BEFORE appending the event that names it, so a crash
  can leave an unreferenced blob but never an event naming a missing one.
- ``describe()`` and every error message name the store without credentials: remote stores take
  theirs the standard way (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_DEFAULT_REGION``; for GCS gcsfs's usual sources: ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's
  application-default login, ``STORAGE_EMULATOR_HOST`` for an emulator), never from the log.
- A remote store that stalls or errors is retried, never waited on forever: every request has short
  connect/read timeouts (``CODIRECTOR_BLOB_TIMEOUT`` seconds, default 5, for S3) and a deadline for the
  whole request (4 × that, plus a second per MB; a request stuck where no socket timeout reaches, such as a
  PUT waiting for ``100 Continue`` on a stalled connection, is abandoned there), and a transient failure
  (a timeout, a dropped connection, HTTP 5xx, 429/SlowDown) is tried again with backoff for up to
  ``CODIRECTOR_BLOB_RETRY_SECONDS`` (default 60) before a ``StoreError`` naming the store says that
  ``resume`` continues. A put is safe to repeat (same name, same bytes); a missing blob or one whose bytes
  do not match its name is damage and is never retried.
- ``delete`` is only for ``codirector gc`` (unreferenced blobs); nothing else ever removes a blob.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codirector.errors import ConfigError, IntegrityViolation, StoreError
from codirector.store.home import file_mode, mask_url

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# protocol -> the package (extra) that implements it
_REMOTE = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs")}
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
# extra -> the variables naming a non-default endpoint, first wins (shown by describe()), and where the
# credentials come from (named in hints)
_ENDPOINT_ENV = {"s3": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"), "gcs": ("STORAGE_EMULATOR_HOST",)}
_CREDENTIALS = {
    "s3": "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION",
    "gcs": "GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`; "
           "STORAGE_EMULATOR_HOST for an emulator",
}


# transient failures of a remote store, by exception class name anywhere in the class's MRO or cause chain
# (botocore, aiohttp, gcsfs and fsspec have no common base; none of them is imported here)
_TRANSIENT_CLASSES = frozenset({
    "TimeoutError", "ConnectionError", "HTTPClientError", "EndpointConnectionError", "ConnectTimeoutError",
    "ReadTimeoutError", "ConnectionClosedError", "IncompleteRead", "ResponseParserError", "ClientPayloadError",
    "ClientConnectionError", "ServerDisconnectedError", "ClientOSError", "FSTimeoutError", "RetryError",
})
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeoutException",
    "InternalError", "ServiceUnavailable", "TooManyRequests", "RequestLimitExceeded", "500", "502", "503", "504",
})
_TRANSIENT_TEXT = ("SlowDown", "reduce your request rate", "Service Unavailable", "Too Many Requests",
                   "Internal Server Error", "Bad Gateway", "Gateway Timeout", "timed out")


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob as a listing sees it: its name, size in bytes, and when it was written (epoch seconds;
    None where the store does not say)."""

    digest: str
    size: int
    modified: float | None


def retry_seconds() -> float:
    """How long a remote store's transient failures are retried (``CODIRECTOR_BLOB_RETRY_SECONDS``, default 60)."""
    return _env_seconds("CODIRECTOR_BLOB_RETRY_SECONDS", 60.0)


def request_timeout() -> float:
    """The connect and read timeout of one request to S3 (``CODIRECTOR_BLOB_TIMEOUT``, default 5 s)."""
    return max(0.5, _env_seconds("CODIRECTOR_BLOB_TIMEOUT", 5.0))


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {text!r}", hint=f"for example {name}=60") from None
    if value < 0:
        raise ConfigError(f"{name} must be a number of seconds, at least 0, got {text!r}")
    return value


def is_transient(error: BaseException) -> bool:
    """Whether a remote store's failure may pass if tried again: a timeout, a lost connection, HTTP 5xx or
    429/SlowDown. A missing object or a refused permission is not (it would fail the same way)."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, FileNotFoundError | PermissionError | IntegrityViolation | ConfigError):
            return False
        if any(cls.__name__ in _TRANSIENT_CLASSES for cls in type(e).__mro__):
            return True
        response = getattr(e, "response", None)  # botocore's ClientError
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(response.get("Error", {}).get("Code", ""))
            if code in _TRANSIENT_CODES or (isinstance(status, int) and (status >= 500 or status == 429)):
                return True
        http = getattr(e, "code", None)  # gcsfs's HttpError
        if isinstance(http, int) and (http >= 500 or http in (408, 429)):
            return True
        if any(t in str(e) for t in _TRANSIENT_TEXT):
            return True
        e = e.__cause__ or e.__context__
    return False


def digest_of(data: bytes) -> str:
    """The sha256 hex digest that names ``data`` in the store."""
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """``digest`` if it is a well-formed blob name, else ``IntegrityViolation``."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise IntegrityViolation(f"{digest!r} is not a blob digest (64 lowercase hex characters)")
    return digest


def blob_key(digest: str) -> str:
    """Where a blob lives under a store's root: ``ab/cdef...``."""
    check_digest(digest)
    return f"{digest[:2]}/{digest[2:]}"


class BlobStore(ABC):
    """The content-addressed contract; subclasses only move bytes (``_read``, ``_write``, ``_has``)."""

    def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its digest; an existing digest is not written again."""
        digest = digest_of(data)
        if not self._has(digest, len(data)):
            self._write(digest, data)
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes of a blob, re-hashed; ``IntegrityViolation`` if it is missing or altered."""
        data = self._read(check_digest(digest))
        if data is None:
            raise IntegrityViolation(
                f"blob {digest[:12]}… is missing from {self.describe()}",
                hint="restore the blob store from a backup; `codirector verify` lists every damaged blob",
            )
        actual = digest_of(data)
        if actual != digest:
            raise IntegrityViolation(
                f"blob {digest[:12]}… in {self.describe()} is altered (its bytes now hash to {actual[:12]}…)",
                hint="restore it from a backup; `codirector verify` lists every damaged blob",
            )
        return data

    def check(self, digest: str) -> str | None:
        """None if the blob is present and intact, else what is wrong with it."""
        data = self._read(check_digest(digest))
        if data is None:
            return "missing"
        actual = digest_of(data)
        if actual != digest:
            return f"altered (its bytes now hash to {actual[:12]}…)"
        return None

    @abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether a blob of that name is stored (its bytes are not checked)."""

    @abstractmethod
    def digests(self) -> Iterator[str]:
        """Every blob digest present in the store."""

    @abstractmethod
    def inventory(self) -> Iterator[BlobInfo]:
        """Every blob present in the store, with its size and when it was written."""

    @abstractmethod
    def delete(self, digest: str) -> None:
        """Remove one blob (``codirector gc`` only, for blobs no event names); absent already is fine."""

    @abstractmethod
    def describe(self) -> str:
        """Where the blobs are, safe to print and log (no credentials)."""

    @abstractmethod
    def ensure(self) -> None:
        """Create the store if it can be created, or raise ``StoreError`` saying why it cannot be used."""

    @abstractmethod
    def _read(self, digest: str) -> bytes | None:
        """The stored bytes, or None if there is no such blob."""

    @abstractmethod
    def _write(self, digest: str, data: bytes) -> None:
        """Store ``data`` under ``digest`` so that it appears complete or not at all."""

    @abstractmethod
    def _has(self, digest: str, size: int) -> bool:
        """Whether a complete blob of that name (and size) is already stored."""


class LocalBlobStore(BlobStore):
    """Files named by their sha256 under ``root/ab/cdef...`` (the fast path: no fsspec)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def digests(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    if not f.name.startswith(".tmp-"):
                        yield sub.name + f.name

    def inventory(self) -> Iterator[BlobInfo]:
        for digest in self.digests():
            try:
                st = self.path(digest).stat()
            except FileNotFoundError:
                continue
            yield BlobInfo(digest, st.st_size, st.st_mtime)

    def delete(self, digest: str) -> None:
        path = self.path(digest)
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def describe(self) -> str:
        return str(self.root)

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _read(self, digest: str) -> bytes | None:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, digest: str, data: bytes) -> None:
        target = write_atomically(self.path(digest), data)
        _fsync_dir(target.parent)

    def _has(self, digest: str, size: int) -> bool:
        try:
            return self.path(digest).stat().st_size == size
        except FileNotFoundError:
            return False


class FsspecBlobStore(BlobStore):
    """Objects named ``<prefix>/ab/cdef...`` in an fsspec filesystem (S3, GCS, ...).

    The filesystem is made on first use, so building the store imports nothing heavy.
    """

    def __init__(self, url: str) -> None:
        protocol, _, rest = url.partition("://")
        self.protocol = protocol.lower()
        self.root = rest.strip("/")
        if not self.root:
            raise ConfigError(f"the blob store URL {url!r} names no bucket",
                              hint=f"use {self.protocol}://BUCKET or {self.protocol}://BUCKET/PREFIX")
        package, extra = _REMOTE.get(self.protocol, (None, None))
        self._extra = extra
        if "@" in self.bucket:  # never echo it: the part before the @ is a credential
            raise ConfigError(f"the {self.protocol}:// blob store URL carries credentials",
                              hint=f"give them the standard way ({self._credentials_hint()}) "
                                   f"and pass {self.protocol}://BUCKET/PREFIX")
        if package is not None and importlib.util.find_spec(package) is None:
            raise ConfigError(f"{self.protocol}:// blob stores need the {package} package, which is not installed",
                              hint=f'pip install "codirector[{extra}]"')
        self._fs: Any = None

    @property
    def fs(self) -> Any:
        if self._fs is None:
            import fsspec

            options: dict[str, Any] = {"skip_instance_cache": True}
            if self.protocol in ("s3", "s3a"):
                options["use_listings_cache"] = False
                options["config_kwargs"] = s3_client_config()
            try:
                fs = fsspec.filesystem(self.protocol, **options)
            except (ImportError, ValueError) as e:
                raise ConfigError(f"cannot open the blob store {self.describe()}: {_scrub(str(e))}") from None
            if self.protocol in ("s3", "s3a"):
                fs.retries = 1  # s3fs's own loop has no time bound; ours (``_call``) has
            self._fs = fs
        return self._fs

    @property
    def bucket(self) -> str:
        return self.root.split("/", 1)[0]

    def key(self, digest: str) -> str:
        return f"{self.root}/{blob_key(digest)}"

    def exists(self, digest: str) -> bool:
        return bool(self._call("look up", self.fs.exists, self.key(digest)))

    def digests(self) -> Iterator[str]:
        found = self._call("list", self.fs.find, self.root, size=-1)
        skip = len(self.root) + 1
        for path in sorted(found):
            name = str(path)[skip:].replace("/", "")
            if _DIGEST.match(name):
                yield name

    def inventory(self) -> Iterator[BlobInfo]:
        found = self._call("list", self._find_detailed, size=-1)
        skip = len(self.root) + 1
        for path in sorted(found):
            name = str(path)[skip:].replace("/", "")
            if _DIGEST.match(name):
                info = found[path]
                yield BlobInfo(name, int(info.get("size") or 0), _modified(info))

    def delete(self, digest: str) -> None:
        try:
            self._call("delete", self.fs.rm_file, self.key(digest))
        except FileNotFoundError:
            pass

    def _find_detailed(self, **deadline: Any) -> dict[str, dict[str, Any]]:
        return dict(self.fs.find(self.root, detail=True, **deadline))

    def describe(self) -> str:
        where = f"{self.protocol}://{self.root}"
        endpoint = next((os.environ[n] for n in _ENDPOINT_ENV.get(self._extra or "", ()) if os.environ.get(n)), None)
        if endpoint:
            where += f" (endpoint {mask_url(endpoint)})"
        return where

    def ensure(self) -> None:
        if not self._call("look up", self.fs.exists, self.bucket):
            raise StoreError(f"the bucket {self.bucket!r} of the blob store {self.describe()} does not exist",
                             hint="create the bucket first (it may be empty), or pass --blobs with an existing one")

    def _read(self, digest: str) -> bytes | None:
        try:
            return bytes(self._call("read", self.fs.cat_file, self.key(digest)))
        except FileNotFoundError:
            return None

    def _write(self, digest: str, data: bytes) -> None:
        self._call("write", self.fs.pipe_file, self.key(digest), data, size=len(data))

    def _has(self, digest: str, size: int) -> bool:
        try:
            info = self._call("look up", self.fs.info, self.key(digest))
        except FileNotFoundError:
            return False
        return int(info.get("size", -1)) == size

    def _call(self, what: str, fn: Any, *args: Any, size: int = 0) -> Any:
        """``fn(*args)``, tried again with backoff while it fails transiently (``is_transient``) for up to
        ``retry_seconds()``; a missing object stays ``FileNotFoundError``, other failures become ``StoreError``.
        On an async filesystem (s3fs, gcsfs) each try has a deadline: 4 request timeouts plus a second per MB
        of ``size`` (-1: a listing, 10 minutes)."""
        bound = retry_seconds()
        start = time.monotonic()
        attempt = 0
        deadline: dict[str, float] = {}
        if getattr(self.fs, "async_impl", False):  # fsspec's sync() abandons (cancels) the request past it
            deadline["timeout"] = 600.0 if size < 0 else 4 * request_timeout() + size / 1e6
        while True:
            try:
                return fn(*args, **deadline)
            except FileNotFoundError:
                raise
            except Exception as e:  # botocore/aiohttp/gcsfs errors have no common base but OSError-ish ones
                attempt += 1
                waited = time.monotonic() - start
                pause = min(5.0, 0.2 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                if is_transient(e) and waited + pause < bound:
                    time.sleep(pause)
                    continue
                raise self._failure(what, e, waited if is_transient(e) else None, attempt) from None

    def _failure(self, what: str, e: Exception, waited: float | None, attempts: int) -> StoreError:
        """The error past the retry bound (``waited``: seconds spent retrying a transient failure) or on a
        failure that trying again would not mend (``waited`` None)."""
        cause = f"{type(e).__name__}: {_scrub(str(e))}"
        if waited is None:
            return StoreError(
                f"cannot {what} blobs in {self.describe()}: {cause}",
                hint="check --blobs / CODIRECTOR_BLOBS, the endpoint and the credentials in the environment "
                     f"({self._credentials_hint()})",
            )
        return StoreError(
            f"cannot {what} blobs in {self.describe()}: the store did not answer for {waited:.0f} s "
            f"({attempts} attempts; last {cause})",
            hint="nothing was recorded past the last complete step; once the blob store answers, "
                 "`codirector resume STORY` (or the same batch again) continues without repeating a recorded "
                 "model call. CODIRECTOR_BLOB_RETRY_SECONDS sets how long to retry "
                 f"(now {retry_seconds():.0f} s); the endpoint and credentials come from {self._credentials_hint()}",
        )

    def _credentials_hint(self) -> str:
        return _CREDENTIALS.get(self._extra or "", "the filesystem's own settings")


def s3_client_config() -> dict[str, Any]:
    """botocore ``Config`` settings for S3 blob stores: short timeouts, so a stalled endpoint is noticed in
    seconds and retried, and a retry policy of botocore's own unless AWS_MAX_ATTEMPTS / AWS_RETRY_MODE say one."""
    timeout = request_timeout()
    config: dict[str, Any] = {"connect_timeout": timeout, "read_timeout": timeout}
    if not (os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE")):
        config["retries"] = {"total_max_attempts": 2, "mode": "standard"}
    return config


def _modified(info: dict[str, Any]) -> float | None:
    """A listing entry's write time in epoch seconds (S3 ``LastModified``, GCS ``updated``, local ``mtime``)."""
    from datetime import datetime

    for key in ("LastModified", "updated", "mtime", "last_modified", "timeCreated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def open_blobs(url: str | os.PathLike[str]) -> BlobStore:
    """The blob store a ``--blobs`` value names: a path / ``file://`` URL, or ``s3://``, ``gs://``, ..."""
    text = os.fspath(url)
    if "://" not in text:
        return LocalBlobStore(Path(text).expanduser())
    protocol = text.split("://", 1)[0].lower()
    if protocol in ("file", "local"):
        return LocalBlobStore(Path(text.split("://", 1)[1]).expanduser())
    if protocol not in _REMOTE:
        try:
            from fsspec.registry import known_implementations
        except ImportError:
            known_implementations = {}
        if protocol not in known_implementations:
            raise ConfigError(f"unknown blob store URL scheme {protocol!r} in {mask_url(_scrub(text))!r}",
                              hint="use a path, file:///path, s3://bucket/prefix or gs://bucket/prefix")
    return FsspecBlobStore(text)


def _scrub(text: str) -> str:
    """``text`` with any credential from the environment masked (errors may echo request details)."""
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def write_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write a file so that it appears complete or not at all (temp file, fsync, rename), with the mode the
    umask gives a new file. An ``OSError`` names ``path`` (never the temporary file)."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    except OSError as e:
        raise naming(e, target) from e
    try:
        os.fchmod(fd, file_mode())  # the umask's mode, not mkstemp's private 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise naming(e, target, tmp) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def naming(e: OSError, target: Path, tmp: str | None = None) -> OSError:
    """``e`` as an ``OSError`` whose file is ``target``, the path the user asked for (not a temporary file);
    a folder in the way that is a file is said so."""
    why = e.strerror or str(e)
    failed = None if e.filename in (None, tmp, str(target)) else Path(e.filename)
    if failed is not None and failed != target and failed in target.parents:
        why = (f"{failed} is a file, not a folder" if isinstance(e, FileExistsError | NotADirectoryError)
               else f"{why} ({failed})")
    return OSError(e.errno, why, str(target))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
