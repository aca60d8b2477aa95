"""Short descriptions keep what tells an evolved state from its base, and say where text was left out."""

from __future__ import annotations

from pathlib import Path

import yaml

from codirector.engine.views.describe import brief, what_differs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"


def _lighthouse() -> tuple[str, str, str]:
    data = yaml.safe_load((EXAMPLES / "lighthouse.yaml").read_text())
    mia = data["cast"][0]["description"]
    scarf = data["shots"][3]["evolves"][0]["description"]
    back = data["shots"][5]["evolves"][0]["description"]
    return mia, scarf, back


def test_an_evolved_state_keeps_the_words_that_differ_from_its_base() -> None:
    mia, scarf, back = _lighthouse()
    assert what_differs(scarf, mia) == "now with a long knitted red scarf wound twice around her neck"
    for limit in (60, 80, 180):
        short = brief(scarf, limit, base_description=mia)
        assert len(short) <= limit and "…" in short, (limit, short)
        assert "red scarf" in short and short != scarf[:limit]
    assert brief(scarf, 180, base_description=mia).startswith("a young woman in her twenties")
    assert brief(scarf, 80, base_description=mia).endswith("wound twice around her neck")


def test_no_shared_start_or_no_base_is_cut_at_a_word_with_an_ellipsis() -> None:
    mia, scarf, back = _lighthouse()
    assert what_differs(back, scarf) is None  # written from scratch: nothing shared to drop
    for text, base in ((back, scarf), (mia, None)):
        short = brief(text, 60, base_description=base)
        assert len(short) <= 60 and short.endswith("…") and text.startswith(short[:-1])
        assert text[len(short) - 1] in " ,;:"  # cut where a word ends
    assert brief(mia, len(mia)) == mia and brief("a cat", 3) == "a…"
