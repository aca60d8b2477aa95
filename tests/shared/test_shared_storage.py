"""One PostgreSQL log and one S3 bucket (a loopback S3-compatible server) shared by processes and
"machines" (separate homes and cache folders): run, branch, replay, export, verify, damage detection,
a second machine working from the shared storage alone, and two stories at once."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from shared.machines import EXAMPLES, normalised

from codirector.engine.studio import Studio

from support import write_story

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _bucket_objects(url: str) -> dict[str, int]:
    bucket, _, prefix = url[len("s3://"):].partition("/")
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_lighthouse_on_postgres_and_s3_then_a_second_machine(  # type: ignore[no-untyped-def]
    machine, counting: Path, pg_url: str, s3_bucket: str, tmp_path: Path
) -> None:
    a = machine("a", db=pg_url, blobs=s3_bucket)
    init = a.json("init")
    assert init["revision_before"] is None and init["blobs"].startswith(s3_bucket)  # empty database, empty bucket
    assert _bucket_objects(s3_bucket) == {}

    run = a.json("run", str(EXAMPLES / "lighthouse.yaml"), "--config", str(counting))
    assert run["completed"] is True
    a.json("branch", "lighthouse", "--from-shot", "4", "--name", "storm",
           "--set", "shots.4.keyframe=Mia at the railing as a storm breaks over the sea, rain on her scarf")
    storm = a.json("run", "--story", "lighthouse", "--branch", "storm")
    assert storm["completed"] is True and storm["model_calls"]["live"] > 0
    replay = a.json("replay", "lighthouse")
    assert replay["identical"] is True and replay["model_calls"] == 0
    video = tmp_path / "lighthouse.mp4"
    a.run("export", "lighthouse", "-o", str(video))
    assert video.stat().st_size > 0

    objects = _bucket_objects(s3_bucket)
    assert len(objects) > 20
    assert not (a.home / "blobs").exists(), "the home must hold no blob when --blobs names a bucket"
    assert all(p.suffix in (".faiss", ".lock") for p in _files(a.home)), _files(a.home)
    report = a.json("verify")
    assert report["ok"] is True and report["blobs"] > 0 and report["vectors"] > 0  # type: ignore[index]
    print(f"\nlighthouse on PostgreSQL + S3: {len(objects)} objects ({sum(objects.values()) / 2**20:.1f} MiB) in the "
          f"bucket, no blob in the home; verify: {report['events']} events, {report['blobs']} blobs, "  # type: ignore[index]
          f"{report['vectors']} vectors ok; replay identical with 0 model calls")  # type: ignore[index]
    stories = a.json("stories")
    assert {b["name"]: b["running"] for b in stories[0]["branches"]} == {"main": False, "storm": False}  # type: ignore[index]

    # a second machine: a fresh home and cache, only --db and --blobs in common
    b = machine("b", db=pg_url, blobs=s3_bucket, cache=tmp_path / "b" / "cache")
    mem = b.json("memory", "lighthouse", "--at-shot", "5")
    assert "Mia_red_scarf" in {e["name"] for e in mem["entities"]}  # type: ignore[index]
    audit = b.json("audit", "lighthouse")
    assert audit["story"] == "lighthouse"  # type: ignore[index]
    b.json("branch", "lighthouse", "--from-shot", "7", "--name", "dawn",
           "--set", "shots.7.keyframe=Tom alone on the gallery at dawn, the lamp going dark")
    dawn = b.json("run", "--story", "lighthouse", "--branch", "dawn")
    assert dawn["completed"] is True and dawn["model_calls"]["live"] > 0  # type: ignore[index]
    assert _files(b.home / "blobs") == [] and any(p.suffix == ".faiss" for p in _files(tmp_path / "b" / "cache"))
    assert b.json("verify")["ok"] is True  # type: ignore[index]
    assert a.json("verify")["ok"] is True  # type: ignore[index]  # machine a's cache catches up on use

    # flip one byte of one object in the bucket: verify fails and names it
    key = sorted(objects)[len(objects) // 2]
    bucket = s3_bucket[len("s3://"):].split("/", 1)[0]
    s3 = boto3.client("s3")
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    digest = key.rsplit("/", 2)[-2] + key.rsplit("/", 1)[-1]
    damaged = a.run("verify", ok=False)
    assert damaged.returncode == 5
    assert f"blob {digest[:12]}…, which is altered" in damaged.stdout, damaged.stdout
    print("after flipping one byte of " + key + ":\n" + "\n".join(
        line for line in damaged.stdout.splitlines() if line.startswith("DAMAGED"))[:600])


def test_two_stories_at_once_share_one_database_and_one_bucket(  # type: ignore[no-untyped-def]
    machine, counting: Path, pg_url: str, s3_bucket: str, tmp_path: Path
) -> None:
    files = [write_story(tmp_path / "pier.yaml", shots=3), write_story(tmp_path / "harbour.yaml", shots=3, seed=11)]
    refs = []
    for f in files:  # each story alone, on its own SQLite home: the reference
        ref = machine(f"ref-{f.stem}")
        ref.run("run", str(f), "--config", str(counting), "--json")
        with Studio(ref.home) as s:
            refs.append(normalised(s.log(f.stem)))

    a = machine("a", db=pg_url, blobs=s3_bucket)
    b = machine("b", db=pg_url, blobs=s3_bucket, cache=tmp_path / "b-cache")
    a.run("init")
    procs = [m.start("run", str(f), "--config", str(counting), "--json") for m, f in zip((a, b), files, strict=True)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    with Studio(tmp_path / "c", db=pg_url, blobs=s3_bucket) as shared:
        for f, ref in zip(files, refs, strict=True):
            assert normalised(shared.log(f.stem)) == ref  # no event lost, none added
        report = shared.verify()
        assert report.ok, [p.line() for p in report.problems]
        assert report.stories == 2
    print(f"\ntwo stories at once on one PostgreSQL + one bucket: {[len(r) for r in refs]} events, equal to each "
          f"story run alone; verify from a third home: {report.events} events, {report.blobs} blobs ok")
    for m in (a, b):
        assert m.json("verify")["ok"] is True  # type: ignore[index]


def test_init_names_a_missing_bucket(machine, pg_url: str, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    m = machine("a", db=pg_url, blobs="s3://no-such-bucket-anywhere/blobs")
    done = m.run("init", ok=False)
    assert done.returncode == 6 and "bucket 'no-such-bucket-anywhere'" in done.stderr
    assert "codirector-test-secret" not in done.stderr and "codirector-test-key" not in done.stderr
