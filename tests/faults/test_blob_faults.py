"""The blob store stalls or errors (#26): S3 through a loopback TCP proxy (tests/tcp_proxy.py) in front of the moto
server. A blackhole shorter than the retry bound is ridden out (put, get, exists); a longer one ends in a
``StoreError`` naming the store and saying that `resume` continues; transient answers (503, SlowDown) are retried
and damage (a digest mismatch, a missing blob) never is."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from codirector.errors import IntegrityViolation, StoreError
from codirector.store.blobs import FsspecBlobStore, digest_of, is_transient, open_blobs

from tcp_proxy import TcpProxy


@pytest.fixture
def proxy(s3_server: str) -> Iterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", int(urlparse(s3_server).port or 0))
    yield p
    p.close()


@pytest.fixture
def proxied(s3_bucket: str, proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch) -> FsspecBlobStore:
    """The test's bucket, reached through the proxy, with 0.5 s timeouts (the least the store takes) so a blackhole is
    noticed fast."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("CODIRECTOR_BLOB_TIMEOUT", "0.5")
    monkeypatch.setenv("CODIRECTOR_BLOB_RETRY_SECONDS", "30")
    store = open_blobs(s3_bucket)
    assert isinstance(store, FsspecBlobStore)
    return store


def test_a_blackhole_shorter_than_the_bound_is_ridden_out(proxied: FsspecBlobStore, proxy: TcpProxy) -> None:
    first = proxied.put(b"before the stall")
    proxy.blackhole(1)  # two request timeouts
    t = time.monotonic()
    digest = proxied.put(b"written during the stall")
    assert time.monotonic() - t >= 0.75  # it did wait the stall out, then succeeded
    assert proxied.get(digest) == b"written during the stall"
    proxy.blackhole(0.75)
    assert proxied.get(first) == b"before the stall" and proxied.exists(digest)
    assert proxied.check(digest) is None


def test_past_the_bound_the_error_names_the_store_and_says_resume(proxied: FsspecBlobStore, proxy: TcpProxy,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODIRECTOR_BLOB_RETRY_SECONDS", "0.75")
    proxied.put(b"warm")
    proxy.blackhole(30)
    t = time.monotonic()
    with pytest.raises(StoreError) as info:
        proxied.put(b"never lands")
    took = time.monotonic() - t
    assert 0.5 <= took < 12, took  # bounded: the retry bound plus at most one request's timeouts
    assert info.value.exit_code == 6
    assert proxied.describe() in info.value.message and "did not answer" in info.value.message
    assert "codirector resume" in str(info.value.hint) and "CODIRECTOR_BLOB_RETRY_SECONDS" in str(info.value.hint)


def test_dropped_connections_are_retried(proxied: FsspecBlobStore, proxy: TcpProxy) -> None:
    digest = proxied.put(b"x" * 1000)
    for _ in range(3):
        proxy.drop_all()
        assert proxied.get(digest) == b"x" * 1000


def test_transient_answers_are_retried_and_damage_is_not(proxied: FsspecBlobStore,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    digest = proxied.put(b"payload")
    real = proxied.fs.cat_file
    answers = [ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                            "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject"),
               OSError(5, "We encountered an internal error. Please try again.")]
    answers[1].__cause__ = ClientError({"Error": {"Code": "InternalError"},
                                        "ResponseMetadata": {"HTTPStatusCode": 500}}, "GetObject")
    calls = []

    def flaky(path: str, **deadline: float) -> bytes:
        calls.append(path)
        if answers:
            raise answers.pop(0)
        return bytes(real(path, **deadline))

    monkeypatch.setattr(proxied.fs, "cat_file", flaky)
    assert proxied.get(digest) == b"payload" and len(calls) == 3
    # a blob whose bytes do not match its name is damage: read once, never retried
    monkeypatch.setattr(proxied.fs, "cat_file", lambda path, **kw: calls.append(path) or b"tampered")
    calls.clear()
    with pytest.raises(IntegrityViolation, match="altered"):
        proxied.get(digest)
    assert len(calls) == 1
    monkeypatch.setattr(proxied.fs, "cat_file", lambda path, **kw: calls.append(path) or real(path, **kw))
    calls.clear()
    with pytest.raises(IntegrityViolation, match="missing"):  # a missing blob neither
        proxied.get(digest_of(b"never stored"))
    assert len(calls) == 1


def test_what_counts_as_transient() -> None:
    from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    assert is_transient(ReadTimeoutError(endpoint_url="http://x"))
    assert is_transient(ConnectTimeoutError(endpoint_url="http://x"))
    assert is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient(TimeoutError()) and is_transient(ConnectionResetError())
    assert is_transient(ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"))
    assert is_transient(ClientError({"Error": {"Code": "X"}, "ResponseMetadata": {"HTTPStatusCode": 429}}, "Put"))
    assert not is_transient(ClientError({"Error": {"Code": "AccessDenied"},
                                         "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject"))
    assert not is_transient(FileNotFoundError("no such key"))
    assert not is_transient(PermissionError("denied"))
    assert not is_transient(IntegrityViolation("altered"))
