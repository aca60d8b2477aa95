"""The pure helpers behind blob serving: media sniffing, byte ranges, thumbnail widths, Host names."""

from __future__ import annotations

from codirector.serve.media import byte_range, media_type, valid_digest, width_for
from codirector.serve.security import host_name

from support import png_bytes


def test_only_media_is_recognised() -> None:
    assert media_type(png_bytes((1, 2, 3))) == "image/png"
    assert media_type(b"\xff\xd8\xff\xe0" + b"\0" * 20) == "image/jpeg"
    assert media_type(b"\0\0\0\x18ftypisom" + b"\0" * 8) == "video/mp4"
    assert media_type(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    for other in (b"", b"{\"answer\": 1}", b"\x93NUMPY" + b"\0" * 10, b"root:x:0:0:root:/root:/bin/bash"):
        assert media_type(other) is None


def test_digests_and_widths() -> None:
    d = "ab" * 32
    assert valid_digest(d) and not valid_digest(d.upper()) and not valid_digest(d[:-1]) and not valid_digest(d + "a")
    assert not valid_digest("../" + d[3:]) and not valid_digest(d[:-1] + "\n")
    assert [width_for(w) for w in (1, 96, 97, 320, 10_000)] == [96, 96, 160, 320, 640]


def test_byte_ranges() -> None:
    assert byte_range(None, 100) is None and byte_range("items=0-1", 100) is None
    assert byte_range("bytes=0-9", 100) == (0, 9)
    assert byte_range("bytes=90-", 100) == (90, 99)
    assert byte_range("bytes=-10", 100) == (90, 99)
    assert byte_range("bytes=50-500", 100) == (50, 99)
    assert byte_range("bytes=100-", 100) is None and byte_range("bytes=5-1", 100) is None
    assert byte_range("bytes=0-1,5-6", 100) is None and byte_range("bytes=a-b", 100) is None


def test_host_names() -> None:
    assert host_name("127.0.0.1:8765") == "127.0.0.1" and host_name("localhost") == "localhost"
    assert host_name("[::1]:8765") == "[::1]" and host_name("evil.example:80") == "evil.example"


def test_a_port_in_use_is_named() -> None:
    import pytest

    from codirector.errors import InvalidArgument
    from codirector.serve.server import bind

    first = bind("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(InvalidArgument, match=f"cannot listen on 127.0.0.1:{port}") as e:
            bind("127.0.0.1", port)
        assert "--port" in (e.value.hint or "")
    finally:
        first.close()
