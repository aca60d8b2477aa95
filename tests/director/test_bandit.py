"""The per-dimension bandit: hand-computed UCB scores and choices, cold start (untried arms first,
the warm start honoured), per-dimension rewards, determinism, epsilon-greedy, and the state as a fold
of the log (rebuilt from stored events equals the live state)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from codirector.engine.director import bandit
from codirector.engine.director.bandit import DIMENSIONS, BanditState, apply, choose, fold, ranking, ucb_scores
from codirector.engine.studio import Studio
from codirector.errors import RunStateError
from codirector.events import DirectionChosen, RewardObserved, StoryCreated

BASE = {"strategy": "informational", "narrative_mode": "analytical", "aesthetic": "clarity_energy"}


def pulled(state: BanditState, iteration: int, arms: dict[str, str], execution: float,
           efficacy: dict[str, float] | None = None) -> BanditState:
    """One full pull through the events, as the director writes them."""
    branch = f"pull-{iteration}"
    state = apply(state, DirectionChosen(iteration=iteration, branch=branch, arms=arms))
    return apply(state, RewardObserved(iteration=iteration, branch=branch, execution=execution,
                                       efficacy=efficacy or {}))


def with_strategy_rewards(rewards: list[tuple[str, float]]) -> BanditState:
    """A state whose strategy dimension saw exactly ``rewards`` (the other dimensions get the same values)."""
    state = BanditState()
    for i, (arm, reward) in enumerate(rewards, start=1):
        state = pulled(state, i, {**BASE, "strategy": arm}, reward)
    return state


def test_ucb_scores_match_the_formula_by_hand() -> None:
    state = with_strategy_rewards([("informational", 50), ("informational", 70), ("transformational", 80),
                                   ("comparative", 50)])
    scores = ucb_scores(state.stats["strategy"], c=50)
    # N = 4 rewarded pulls in the dimension
    assert scores["informational"]["mean"] == 60 and scores["informational"]["pulls"] == 2
    assert scores["informational"]["score"] == pytest.approx(60 + 50 * math.sqrt(math.log(4) / 2), abs=1e-6)
    assert scores["transformational"]["score"] == pytest.approx(80 + 50 * math.sqrt(math.log(4)), abs=1e-6)
    assert scores["comparative"]["score"] == pytest.approx(50 + 50 * math.sqrt(math.log(4)), abs=1e-6)
    # 101.63 vs 138.87 vs 108.87
    choice = choose(state, c=50)
    assert choice.arms["strategy"] == "transformational"
    assert choice.why["strategy"]["rule"] == "ucb (c=50)"


def test_the_exploration_bonus_can_beat_a_higher_mean_and_c_controls_it() -> None:
    state = with_strategy_rewards([("informational", 70), ("informational", 70), ("informational", 70),
                                   ("transformational", 45), ("comparative", 40)])
    # c=50: informational 70 + 50*sqrt(ln5/3) = 106.62; transformational 45 + 50*sqrt(ln5) = 108.43
    assert choose(state, c=50).arms["strategy"] == "transformational"
    # c=10: informational 77.32; transformational 57.69
    assert choose(state, c=10).arms["strategy"] == "informational"
    # c=0 is pure exploitation of the mean
    assert choose(state, c=0).arms["strategy"] == "informational"


def test_ties_go_to_fewer_pulls_then_to_the_earlier_arm() -> None:
    state = with_strategy_rewards([("informational", 60), ("transformational", 60), ("comparative", 60)])
    assert choose(state, c=50).arms["strategy"] == "informational"  # all equal: the first arm
    state = with_strategy_rewards([("informational", 60), ("transformational", 60), ("comparative", 60),
                                   ("comparative", 60)])
    # comparative has the lower bonus; informational and transformational tie: the earlier one
    assert choose(state, c=50).arms["strategy"] == "informational"
    state = with_strategy_rewards([("informational", 60), ("informational", 60), ("transformational", 60),
                                   ("comparative", 50)])
    # c=0: informational and transformational tie on the mean; transformational has fewer pulls
    assert choose(state, c=0).arms["strategy"] == "transformational"


def test_untried_arms_are_pulled_first_starting_with_the_warm_start() -> None:
    recommended = {"strategy": "comparative", "narrative_mode": "vignette", "aesthetic": "kinetic_grit"}
    state = BanditState()
    seen: dict[str, list[str]] = {d: [] for d in DIMENSIONS}
    for i in range(1, 5):
        choice = choose(state, c=50, recommended=recommended, seed=7)
        for dim, arm in choice.arms.items():
            seen[dim].append(arm)
        if i == 1:
            assert choice.arms == recommended
            assert all(w["rule"] == "untried: the warm-start recommendation" for w in choice.why.values())
        state = pulled(state, i, choice.arms, 100.0)  # high rewards: UCB alone would keep pulling them
    # every arm is tried once before any arm is pulled twice, in every dimension
    assert sorted(seen["aesthetic"]) == sorted(DIMENSIONS["aesthetic"])
    assert sorted(seen["strategy"][:3]) == sorted(DIMENSIONS["strategy"])
    assert sorted(seen["narrative_mode"][:3]) == sorted(DIMENSIONS["narrative_mode"])
    assert choose(state, c=50).why["aesthetic"]["untried"] == []


def test_a_tried_recommendation_falls_back_to_a_seeded_random_untried_arm() -> None:
    recommended = dict(BASE)
    state = pulled(BanditState(), 1, dict(BASE), 90.0)
    choice = choose(state, recommended=recommended, seed=3)
    for dim in DIMENSIONS:
        assert choice.arms[dim] != BASE[dim]
        assert choice.why[dim]["rule"] == "untried: seeded random"


def test_each_dimension_is_updated_with_its_own_efficacy_score_or_the_execution_score() -> None:
    arms = {"strategy": "comparative", "narrative_mode": "vignette", "aesthetic": "minimalist_focus"}
    state = pulled(BanditState(), 1, arms, execution=40.0, efficacy={"strategy": 90.0, "aesthetic": 15.0})
    assert state.stats["strategy"]["comparative"].total == 90.0
    assert state.stats["aesthetic"]["minimalist_focus"].total == 15.0
    assert state.stats["narrative_mode"]["vignette"].total == 40.0  # no efficacy for it: the execution score
    assert state.pulls[1].rewards == {"strategy": 90.0, "narrative_mode": 40.0, "aesthetic": 15.0}
    untouched = [s for dim in DIMENSIONS for arm, s in state.stats[dim].items() if arm != arms[dim]]
    assert all(s.pulls == 0 and s.total == 0 for s in untouched)


def test_choices_are_deterministic_under_a_seed() -> None:
    def sequence(seed: int) -> list[dict[str, str]]:
        state, out = BanditState(), []
        for i in range(1, 9):
            arms = choose(state, seed=seed).arms
            out.append(arms)
            state = pulled(state, i, arms, 50.0 + (i * 7) % 13)
        return out

    assert sequence(5) == sequence(5)
    assert len({str(sequence(s)) for s in range(6)}) > 1  # the seed matters (for the untried draws)


def test_epsilon_greedy_exploits_the_best_mean_or_explores() -> None:
    state = with_strategy_rewards([("informational", 40), ("transformational", 90), ("comparative", 60)])
    state = pulled(state, 4, {**BASE, "aesthetic": "kinetic_grit"}, 50.0)
    greedy = choose(state, policy="epsilon_greedy", epsilon=0.0)
    assert greedy.arms["strategy"] == "transformational" and greedy.why["strategy"]["rule"].startswith("exploit")
    explore = choose(state, policy="epsilon_greedy", epsilon=1.0, seed=1)
    assert explore.why["strategy"]["rule"] == "explore (epsilon=1)"


def test_bad_settings_and_arms_name_the_value_and_the_fix() -> None:
    with pytest.raises(RunStateError, match="unknown bandit policy 'ucb2'") as info:
        choose(BanditState(), policy="ucb2")
    assert "ucb" in str(info.value.hint)
    with pytest.raises(RunStateError, match="c must be 0 or more, got -1"):
        choose(BanditState(), c=-1)
    with pytest.raises(RunStateError, match="'noir' is not an arm of 'aesthetic'"):
        bandit.check_arms({**BASE, "aesthetic": "noir"})
    with pytest.raises(RunStateError, match="unknown dimension 'style'"):
        bandit.check_arms({**BASE, "style": "x"})


def test_ranking_orders_by_score_then_execution() -> None:
    state = pulled(BanditState(), 1, dict(BASE), 80.0, {"strategy": 20.0, "narrative_mode": 20.0, "aesthetic": 20.0})
    state = pulled(state, 2, {**BASE, "strategy": "comparative"}, 60.0)
    order = ranking(state)
    assert [r["iteration"] for r in order] == [2, 1]  # (60+60)/2 = 60 beats (80+20)/2 = 50
    assert order[0]["score"] == 60.0 and order[1]["score"] == 50.0


def test_the_state_rebuilt_from_stored_events_equals_the_live_state(tmp_path: Path) -> None:
    studio = Studio(tmp_path / "home")
    studio.init()
    studio.store.create_story("fold", title="t", events=[StoryCreated(title="t", seed=1).at()])
    live = BanditState()
    recommended = {"strategy": "transformational", "narrative_mode": "vignette", "aesthetic": "cinematic_premium"}
    for i in range(1, 7):
        choice = choose(live, seed=11, recommended=recommended)
        chosen = DirectionChosen(iteration=i, branch=f"pull-{i}", arms=choice.arms, why=choice.why,
                                 recommended=recommended)
        reward = RewardObserved(iteration=i, branch=f"pull-{i}", execution=30.0 + 9 * i,
                                efficacy={"strategy": float(10 * i), "aesthetic": 99.0 - i})
        head = studio.store.head("fold")
        studio.store.append("fold", "main", [chosen.at(), reward.at()], expected_position=head)
        live = apply(apply(live, chosen), reward)
    rebuilt = fold(studio.store.read("fold"))
    assert rebuilt == live
    assert rebuilt.to_json() == live.to_json()
    assert rebuilt.recommended == recommended
    # and a crash between choice and reward leaves the pull pending, not lost
    studio.store.append("fold", "main", [DirectionChosen(iteration=7, branch="pull-7", arms=BASE).at()],
                        expected_position=studio.store.head("fold"))
    pending = fold(studio.store.read("fold")).pending
    assert pending is not None and pending.iteration == 7 and not pending.rewarded
