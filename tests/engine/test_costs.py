"""Costs and budgets (docs/architecture.md §9), end to end through the CLI against a loopback OpenAI server.

The server answers every agent and image request and reports usage the way OpenAI does (chat:
prompt/completion tokens with cached prompt tokens; images: input/output tokens with text/image
details). The test prices that usage itself, with OpenAI's list prices written out here, and
compares: ``cost --json`` totals by shot and by agent, a branch's shared prefix, replay's
"would have cost", a budget that stops a run before the call that would cross it, an unpriced
model, and that no key ever reaches usage, prices or the log.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai_loopback import FAKE_KEY, OpenAIServer, Reply, Seen, agent_reply, image_reply_for
from typer.testing import CliRunner

from codirector import errors
from codirector.cli import app
from codirector.engine.studio import Studio
from codirector.events import RUN_MARKS
from codirector.generators.prices import PriceTable, call_cost, image_output_tokens_bound, vision_tokens_bound

from support import TINY_CLIP, TINY_CLIP_CONFIG, write_story

runner = CliRunner()

# OpenAI list prices per million tokens, written out independently of generators.prices.
GPT41_IN, GPT41_CACHED, GPT41_OUT = 2.00, 0.50, 8.00
IMAGE_TEXT_IN, IMAGE_IMAGE_IN, IMAGE_OUT = 5.00, 10.00, 40.00
LOW_OUTPUT = {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400}


# ---------------------------------------------------------------------------- the loopback server


def chat_with_usage(seen: Seen) -> Reply:
    """An agent's answer with usage like OpenAI's: a third of the prompt served from the prompt cache."""
    reply = agent_reply(seen, ("Ada", "Ben"))
    if reply.status != 200:
        return reply
    parts = [p for m in seen.json["messages"] for p in (m["content"] if isinstance(m["content"], list)
                                                         else [{"type": "text", "text": m["content"]}])]
    text = sum(len(p["text"]) for p in parts if p["type"] == "text")
    images = sum(1 for p in parts if p["type"] == "image_url")
    prompt = text // 4 + 85 * images + 7
    completion = len(reply.body["choices"][0]["message"]["content"]) // 4 + 1
    reply.body["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": prompt // 3},
                           "api_key": FAKE_KEY}  # a server that echoes junk: it must never reach the log
    return reply


def image_with_usage(seen: Seen) -> Reply:
    """An image with the Images API's usage (text and image input tokens, output tokens for the size)."""
    reply = image_reply_for(seen)
    prompt = seen.json["prompt"] if seen.json else seen.text("prompt")
    size = seen.json["size"] if seen.json else seen.text("size")
    refs = 0 if seen.json else len(seen.fields("image[]"))
    text, pictures = len(prompt) // 4 + 1, 65 * refs
    reply.body["usage"] = {"input_tokens": text + pictures, "output_tokens": LOW_OUTPUT[size],
                           "total_tokens": text + pictures + LOW_OUTPUT[size],
                           "input_tokens_details": {"text_tokens": text, "image_tokens": pictures}}
    return reply


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    s = OpenAIServer().start()
    s.responders["/v1/chat/completions"] = chat_with_usage
    s.responders["/v1/images/generations"] = image_with_usage
    s.responders["/v1/images/edits"] = image_with_usage
    yield s
    s.stop()


def config(path: Path, server: OpenAIServer, *, vlm_model: str = "gpt-4.1", extra: str = "") -> Path:
    clip = path.parent / f"{TINY_CLIP}.json"
    clip.write_text(json.dumps(TINY_CLIP_CONFIG))
    path.write_text(f"""\
profile = "openai"
[vlm]
backend = "openai"
model = "{vlm_model}"
base_url = "{server.base_url}"
timeout = 20
max_retries = 0
max_tokens = 300
[image]
backend = "openai"
model = "gpt-image-1"
base_url = "{server.base_url}"
timeout = 20
max_retries = 0
quality = "low"
[video]
backend = "animatic"
[embedder]
backend = "open_clip"
model = "{TINY_CLIP}"
pretrained = "none"
model_config = "{clip}"
device = "cpu"
[run]
width = 64
height = 48
num_frames = 5
fps = 4.0
max_rounds = 1
{extra}""")
    return path


def cli(home: Path, *args: str) -> Any:
    return runner.invoke(app, ["--home", str(home), *args])


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def expected_cost(p: dict[str, Any]) -> float:
    """One call's price, computed here from its recorded usage (free: the animatic and the local embedder)."""
    u = p["usage"]
    if p["kind"] == "vlm":
        cached = u["prompt_tokens_details"]["cached_tokens"]
        return ((u["prompt_tokens"] - cached) * GPT41_IN + cached * GPT41_CACHED
                + u["completion_tokens"] * GPT41_OUT) / 1e6
    if p["kind"] == "image":
        text = u["input_tokens_details"]["text_tokens"]
        pictures = u["input_tokens"] - text
        return (text * IMAGE_TEXT_IN + pictures * IMAGE_IMAGE_IN + u["output_tokens"] * IMAGE_OUT) / 1e6
    assert p["backend"] in ("animatic", "open_clip"), p["backend"]
    return 0.0


def calls(home: Path, story: str, branch: str = "main") -> list[Any]:
    with Studio(home) as studio:
        return [e for e in studio.log(story, branch, types=["ModelCalled"])]


def comparable(events: list[Any]) -> list[tuple[Any, ...]]:
    """A log as content: type, shot, payload (latency aside), cause by place; run marks left out."""
    kept = [e for e in events if e.type not in RUN_MARKS]
    place = {e.id: i for i, e in enumerate(kept)}
    out = []
    for e in kept:
        payload = {k: v for k, v in e.payload.items() if k != "duration_ms"}
        out.append((e.type, e.shot, json.dumps(payload, sort_keys=True), place.get(e.causation_id)))
    return out


@pytest.fixture
def story(tmp_path: Path) -> Path:
    return write_story(tmp_path / "pier.yaml", shots=4)


# ---------------------------------------------------------------------------- acceptance


def test_cost_totals_equal_usage_times_prices_by_shot_and_by_agent(tmp_path: Path, server: OpenAIServer,
                                                                    story: Path) -> None:
    home, cfg = tmp_path / "home", config(tmp_path / "openai.toml", server)
    run = as_json(cli(home, "run", str(story), "--config", str(cfg), "--json"))
    assert run["completed"]
    recorded = [e for e in calls(home, "pier") if e.payload["error"] is None]
    assert {e.payload["kind"] for e in recorded} == {"vlm", "image", "video", "embed"}
    total = sum(expected_cost(e.payload) for e in recorded)
    by_shot: dict[Any, float] = defaultdict(float)
    by_agent: dict[Any, float] = defaultdict(float)
    for e in recorded:
        by_shot[e.shot] += expected_cost(e.payload)
        by_agent[e.payload["agent"] or e.payload["kind"]] += expected_cost(e.payload)
    assert total > 0.001

    report = as_json(cli(home, "cost", "pier", "--json"))
    assert abs(report["total_usd"] - total) < 1e-9
    assert report["calls"] == len(recorded) and report["unpriced"] == [] and report["reused_calls"] == 0
    assert report["saved_usd"] == 0 and report["shared_usd"] == 0
    assert {r["shot"]: r["usd"] for r in report["rows"]} == pytest.approx(dict(by_shot), abs=1e-9)
    assert abs(sum(r["usd"] for r in report["rows"]) - total) < 1e-9
    agents = as_json(cli(home, "cost", "pier", "--by", "agent", "--json"))
    assert {r["agent"]: r["usd"] for r in agents["rows"]} == pytest.approx(dict(by_agent), abs=1e-9)
    assert {"memory_controller", "keyframe_analyzer", "motion_refiner", "video_analyzer", "image"} <= \
        {r["agent"] for r in agents["rows"]}
    models = as_json(cli(home, "cost", "pier", "--by", "model", "--json"))
    assert models["prices"]["gpt-4.1"]["output_per_million"] == GPT41_OUT
    assert abs(sum(r["usd"] for r in models["rows"] if r["model"] in ("gpt-4.1", "gpt-image-1")) - total) < 1e-9
    assert abs(run["cost"]["spent_usd"] - total) < 1e-9 and run["cost"]["saved_usd"] == 0

    # what each kind of call recorded
    kinds = {e.payload["kind"]: e.payload["usage"] for e in recorded}
    assert set(kinds["image"]) >= {"input_tokens", "output_tokens", "input_tokens_details", "images", "size"}
    assert kinds["image"]["images"] == 1 and kinds["image"]["size"] == "1536x1024"
    assert kinds["video"] == {"video_seconds": 1.25, "frames": 5}
    assert kinds["embed"]["inputs"] >= 1
    # the text view and the audit say the same
    text = cli(home, "cost", "pier")
    assert text.exit_code == 0 and f"${total:.6f}" in text.output
    audit = as_json(cli(home, "audit", "pier", "--json"))
    assert abs(audit["cost"]["total_usd"] - total) < 1e-9
    assert {r["shot"]: r["usd"] for r in audit["cost"]["rows"]} == pytest.approx(dict(by_shot), abs=1e-9)
    shown = cli(home, "audit", "pier")
    assert shown.exit_code == 0 and f"cost ${by_shot[2]:.4f}" in shown.output


def test_a_branch_shares_its_prefix_and_replay_costs_nothing(tmp_path: Path, server: OpenAIServer,
                                                            story: Path) -> None:
    home, cfg = tmp_path / "home", config(tmp_path / "openai.toml", server)
    as_json(cli(home, "run", str(story), "--config", str(cfg), "--json"))
    main_total = as_json(cli(home, "cost", "pier", "--json"))["total_usd"]
    created = as_json(cli(home, "branch", "pier", "--from-shot", "4", "--name", "storm", "--set",
                          "shots.4.keyframe=Ben alone on the pier in a storm", "--json"))
    fork = created["fork_position"]
    before = len(server.requests())
    run = as_json(cli(home, "run", "--story", "pier", "--branch", "storm", "--config", str(cfg), "--json"))
    assert run["completed"]

    events = calls(home, "pier", "storm")
    prefix = [e for e in events if e.branch == "main" and e.payload["error"] is None]
    own = [e for e in events if e.branch == "storm"]
    assert prefix and all(e.position <= fork for e in prefix) and own
    assert len(server.requests()) - before == len([e for e in own if e.payload["kind"] in ("vlm", "image")])
    report = as_json(cli(home, "cost", "pier", "--branch", "storm", "--json"))
    shared = sum(expected_cost(e.payload) for e in prefix)
    assert report["shared_calls"] == len(prefix) and abs(report["shared_usd"] - shared) < 1e-9
    assert abs(report["total_usd"] - sum(expected_cost(e.payload) for e in own)) < 1e-9  # not spent again
    assert report["calls"] == len(own) and report["reused_calls"] == len(prefix)
    assert abs(report["saved_usd"] - shared) < 1e-9 and 0 < shared < main_total
    shots = {r["shot"]: r for r in report["rows"]}
    assert all(shots[s]["usd"] == 0 and shots[s]["reused_calls"] > 0 for s in (1, 2, 3))
    assert shots[4]["usd"] > 0 and shots[4]["calls"] > 0

    requests = len(server.requests())
    replayed = as_json(cli(home, "replay", "pier", "--json"))
    assert replayed["identical"] and replayed["model_calls"] == 0 and replayed["cost_usd"] == 0
    assert len(server.requests()) == requests
    assert abs(replayed["would_have_cost_usd"] - main_total) < 1e-9
    scratch = as_json(cli(home, "cost", "pier", "--branch", replayed["scratch_branch"], "--json"))
    assert scratch["total_usd"] == 0 and scratch["calls"] == 0
    assert abs(scratch["saved_usd"] - main_total) < 1e-9


def test_a_budget_stops_before_the_call_that_would_cross_it_and_resume_finishes(
        tmp_path: Path, server: OpenAIServer, story: Path) -> None:
    cfg = config(tmp_path / "openai.toml", server)
    free = tmp_path / "unbudgeted"
    as_json(cli(free, "run", str(story), "--config", str(cfg), "--json"))
    full = as_json(cli(free, "cost", "pier", "--json"))["total_usd"]

    home, budget = tmp_path / "budgeted", round(full / 2, 6)
    before = len(server.requests())
    stopped = cli(home, "run", str(story), "--config", str(cfg), "--budget", str(budget), "--json")
    assert stopped.exit_code == 12, stopped.output
    assert "budget reached" in stopped.output and "resume pier --budget" in stopped.output
    with Studio(home) as studio:
        marks = studio.log("pier", types=["BudgetReached"])
        live = [e for e in studio.log("pier", types=["ModelCalled"])]
    assert len(marks) == 1
    mark = marks[0].payload
    assert mark["limit_usd"] == budget and mark["spent_usd"] <= budget < mark["spent_usd"] + mark["call_worst_usd"]
    spent = as_json(cli(home, "cost", "pier", "--json"))["total_usd"]
    assert spent <= budget and abs(spent - mark["spent_usd"]) < 1e-9
    assert spent == pytest.approx(sum(expected_cost(e.payload) for e in live), abs=1e-9)
    paid = [e for e in live if e.payload["kind"] in ("vlm", "image")]
    assert len(server.requests()) - before == len(paid)  # one request per recorded call: the refused one never went
    assert not any(e.payload["request_key"] == mark["request_key"] for e in live)

    again = cli(home, "resume", "pier", "--budget", str(budget))  # the same budget stops again, before any call
    assert again.exit_code == 12 and len(server.requests()) - before == len(paid)
    resumed = as_json(cli(home, "resume", "pier", "--budget", str(full * 10), "--json"))
    assert resumed["completed"] and resumed["model_calls"]["matched_from_log"] == len(live)
    assert abs(resumed["cost"]["saved_usd"] - spent) < 1e-9
    assert abs(as_json(cli(home, "cost", "pier", "--json"))["total_usd"] - full) < 1e-9
    with Studio(free) as a, Studio(home) as b:
        assert comparable(b.log("pier")) == comparable(a.log("pier"))
        assert [e.type for e in b.log("pier")].count("BudgetReached") == 2
    assert as_json(cli(home, "replay", "pier", "--json"))["identical"]
    assert cli(home, "verify").exit_code == 0


def test_an_unpriced_model_is_reported_with_its_usage_and_refused_under_a_budget(
        tmp_path: Path, server: OpenAIServer, story: Path) -> None:
    home, cfg = tmp_path / "home", config(tmp_path / "local.toml", server, vlm_model="test-vlm")
    refused = cli(home, "run", str(story), "--config", str(cfg), "--budget", "5")
    assert refused.exit_code == 2 and "'test-vlm'" in refused.output and '[prices."test-vlm"]' in refused.output
    assert server.requests() == []  # refused before any call

    as_json(cli(home, "run", str(story), "--config", str(cfg), "--story-id", "pier2", "--json"))
    recorded = [e.payload for e in calls(home, "pier2")]
    vlm = [p for p in recorded if p["kind"] == "vlm"]
    report = as_json(cli(home, "cost", "pier2", "--json"))
    assert report["unpriced"] == ["test-vlm"]
    assert report["unpriced_usage"]["test-vlm"]["prompt_tokens"] == sum(p["usage"]["prompt_tokens"] for p in vlm)
    assert abs(report["total_usd"] - sum(expected_cost(p) for p in recorded if p["kind"] != "vlm")) < 1e-9
    assert sum(r["unpriced_calls"] for r in report["rows"]) == len(vlm)
    text = cli(home, "cost", "pier2")
    assert "unpriced: test-vlm (" in text.output and "prompt_tokens" in text.output
    assert '[prices."test-vlm"]' in text.output
    audit = as_json(cli(home, "audit", "pier2", "--json"))
    assert audit["cost"]["unpriced"] == ["test-vlm"] and audit["cost"]["unpriced_usage"]["test-vlm"]
    html = tmp_path / "audit.html"
    shown = cli(home, "audit", "pier2", "--html", str(html))
    assert "unpriced: test-vlm" in shown.output
    assert "data-unpriced='test-vlm'" in html.read_text() and "prompt_tokens" in html.read_text()

    prices = tmp_path / "prices.toml"  # priced when asked: the table in force now, not at run time
    prices.write_text('[prices."test-vlm"]\ninput_per_million = 1.0\noutput_per_million = 3.0\n')
    repriced = as_json(cli(home, "cost", "pier2", "--prices", str(prices), "--json"))
    extra = sum(p["usage"]["prompt_tokens"] * 1.0 + p["usage"]["completion_tokens"] * 3.0 for p in vlm) / 1e6
    assert repriced["unpriced"] == [] and abs(repriced["total_usd"] - report["total_usd"] - extra) < 1e-9
    assert repriced["prices"]["test-vlm"]["source"] == "config"


def test_no_key_or_header_reaches_usage_prices_or_the_log(tmp_path: Path, server: OpenAIServer, story: Path) -> None:
    home, cfg = tmp_path / "home", config(tmp_path / "openai.toml", server)
    as_json(cli(home, "run", str(story), "--config", str(cfg), "--json"))
    assert server.requests("/v1/chat/completions")[0].headers["authorization"] == f"Bearer {FAKE_KEY}"
    with Studio(home) as studio:
        log = json.dumps([e.summary() for e in studio.log("pier")])
    cost = cli(home, "cost", "pier", "--by", "model", "--json").stdout
    for text in (log, cost):
        assert FAKE_KEY not in text and "authorization" not in text.lower() and "bearer" not in text.lower()
    for e in calls(home, "pier"):
        assert "api_key" not in json.dumps(e.payload["usage"])
    bad = tmp_path / "bad.toml"
    bad.write_text('[prices."gpt-4.1"]\napi_key = "sk-1"\n')
    assert cli(home, "cost", "pier", "--prices", str(bad)).exit_code == 2
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "## What does it cost?" in readme


# ---------------------------------------------------------------------------- prices and bounds


def test_prices_read_usage_of_every_kind_and_never_price_the_unknown_at_zero() -> None:
    table = PriceTable.builtin()
    chat = {"prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 400}}
    assert table.cost("openai", "gpt-4.1", chat) == pytest.approx((600 * 2 + 400 * 0.5 + 100 * 8) / 1e6)
    image = {"input_tokens": 300, "output_tokens": 272, "input_tokens_details": {"text_tokens": 100}}
    assert table.cost("openai", "gpt-image-1", image) == pytest.approx((100 * 5 + 200 * 10 + 272 * 40) / 1e6)
    assert table.cost("openai", "gpt-4.1", None) is None  # a token price and no tokens: unknown, not free
    assert table.cost("openai", "qwen2.5vl:7b", chat) is None
    assert table.cost("diffusers", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", {"compute_seconds": 60.0}) is None
    assert table.cost("animatic", "animatic-v1", {"video_seconds": 2}) == 0.0  # local and free: a stated zero
    assert table.cost("storyboard", "storyboard-v1", None) == 0.0
    gpu = PriceTable.with_overrides({"Wan-AI/Wan2.2-I2V-A14B-Diffusers": {"per_second": 0.0011}})
    assert gpu.cost("diffusers", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", {"compute_seconds": 60.0,
                                                                      "video_seconds": 2}) == pytest.approx(0.066)
    per_image = PriceTable.with_overrides({"sdxl": {"per_image": 0.01}})
    assert per_image.cost("diffusers", "sdxl", {"images": 2}) == pytest.approx(0.02)
    for bad, words in (({"input_per_milion": 1}, "input_per_million"), ({"per_second": -1}, "0 or more"),
                       ({"per_second": "1"}, "number")):
        with pytest.raises(errors.ConfigError, match=words):
            PriceTable.with_overrides({"m": bad})


def test_worst_cases_bound_what_the_api_can_bill() -> None:
    assert vision_tokens_bound(4000, 1000, "low") == 85
    assert vision_tokens_bound(1024, 1024, "high") == 85 + 170 * 4
    assert vision_tokens_bound(64, 48, "auto") == 255
    assert image_output_tokens_bound("1536x1024", "low") == 400
    assert image_output_tokens_bound("auto", None) == 6240
    from codirector.generators.base import ImageInput, VLMRequest
    from codirector.generators.openai_vlm import OpenAIVLM

    from support import png_bytes

    vlm = OpenAIVLM(model="gpt-4.1", base_url="http://127.0.0.1:9/v1", max_tokens=250)
    request = VLMRequest(agent="a", system="sys " * 50, user="user " * 80, schema_name="S",
                         json_schema={"type": "object"}, images=(ImageInput("x", "d", png_bytes((1, 2, 3))),))
    bound = vlm.usage_bound(request)
    assert bound["completion_tokens"] == 250 and bound["prompt_tokens"] > len("sys " * 50 + "user " * 80)
    unbounded = OpenAIVLM(model="gpt-4.1", base_url="http://127.0.0.1:9/v1").usage_bound(request)
    assert unbounded["completion_tokens"] == 32_768
    assert call_cost(PriceTable.builtin().prices["gpt-4.1"], bound) == pytest.approx(
        (bound["prompt_tokens"] * 2 + 250 * 8) / 1e6)


def test_budget_errors_have_their_own_exit_code_and_group() -> None:
    assert errors.BudgetExceeded.exit_code == 12
    assert issubclass(errors.BudgetExceeded, errors.StateConflict)
    codes = {c.exit_code for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.CodirectorError)
             and c is not errors.BudgetExceeded}
    assert 12 not in codes


def test_direct_and_bench_print_their_spend_and_take_a_budget(tmp_path: Path) -> None:
    from support import tiny_preview_config

    home = tmp_path / "home"
    cfg = tiny_preview_config(tmp_path)
    brief = Path(__file__).resolve().parents[2] / "examples" / "briefs" / "dewline_serum.yaml"
    shown = cli(home, "direct", str(brief), "--config", str(cfg), "--iterations", "2", "--budget", "0")
    assert shown.exit_code == 0, shown.output
    assert "cost" in shown.output and "$0.0000 in all" in shown.output  # the preview backends are free
    directed = as_json(cli(home, "resume", "dewline_serum", "--json"))
    assert directed["cost"]["total_usd"] == 0 and "main" in directed["cost"]["usd"]
    assert all(p["branch"] in directed["cost"]["usd"] for p in directed["pulls"])
    stories = tmp_path / "stories"
    stories.mkdir()
    write_story(stories / "pier.yaml", shots=2)
    bench = cli(home, "bench", str(stories), "--methods", "full", "--config", str(cfg), "--budget", "0")
    assert bench.exit_code == 0, bench.output
    assert "cost: full $0.0000" in bench.output
