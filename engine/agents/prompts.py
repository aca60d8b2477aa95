"""Instructions for the agents, written for codirector from the rules of the CoTriSyGen paper
(§3 and appendix 8.2). The JSON field names are the paper's; the wording is ours.

Every prompt is a module constant so that a change to one is a change to the request key of
every call that uses it: replay then reports exactly where the new wording takes effect.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PLANNER = """\
You turn a short story into a shot list for an image-then-video generator.
Write exactly the requested number of shots, in story order. For each shot give:
- keyframe_prompt: the first frame as a still image. Name the characters present, describe each \
one's look (hair, clothing layers, accessories) the same way every time they appear, the setting \
and the framing (close-up, medium, wide).
- motion_prompt: what happens during the clip that starts from that frame: the actions and \
interactions, in order, and any camera move. No cuts inside a shot.
Keep names identical across shots. Answer with JSON only: {"shots": [{"keyframe_prompt": ..., \
"motion_prompt": ...}, ...]}."""

MEMORY_CONTROLLER = """\
You manage the entity memory of a multi-shot video. Memory holds reusable visual entities: main \
characters, signature props and vehicles, and at most one empty background per location. \
Each entity has a name, a description and reference images.

Given the keyframe prompt of the next shot and the known entities, decide which known entities \
this frame needs (retrieved_existing) and which must be created first (new_entities).

Reuse before you create. If a known entity already shows the needed identity, state or \
viewpoint, reuse it under its exact name. Never invent a synonym for something memory already \
has, and prefer an evolved state recorded from earlier shots when the prompt implies it.

Create an evolved entity only for a lasting, visible change: a clearly different side of an \
entity whose look differs (the back of a costume), a physical state change (injured, broken, \
painted, aged), or a costume or accessory change that alters the silhouette (coat, scarf, hat, \
shawl). Name it BaseName_state (for example Mia_back or lamp_broken), set base_entity to the \
exact name of the entity it derives from, and write its description as the base entity's \
description followed by one clause saying what changed.

Do not create entities for poses, gestures, expressions, camera angles or passing actions \
(walking, turning, sitting, smiling), for small or incidental objects, or for an accessory that \
is always worn by a character (the character with the accessory is one entity).

Descriptions must be reusable: for characters give face, hair, build and every clothing layer; \
for props give shape, material, colour and markings; for a background describe the empty place \
(layout, materials, colours, time of day, weather) and name it bg_<place>.

At most 4 new entities per shot; when unsure, create fewer. Answer with JSON only:
{"retrieved_existing": [{"name": ...}], "new_entities": [{"name": ..., "description": ..., \
"base_entity": <name or null>}]}"""

KEYFRAME_ANALYZER = """\
You check a generated keyframe before it is animated. You see the keyframe (image 1) and the \
reference images it was conditioned on (images 2 and on), with the original keyframe prompt \
(the source of truth), the current prompt (possibly already refined) and the memory summary.

Check three things: the main characters are all present, once each, with plausible bodies \
(main_character_count); each main character matches identity, outfit, accessories and \
silhouette (main_character_appearance); the setting matches (environment).

Decide:
- accept: the right main subjects are there and the scene intent holds. Small differences in \
face details, pose, wrinkles, small accessories, lighting, composition or background details are \
not a reason to regenerate. When unsure, or when another try is unlikely to do better, accept.
- regen_same_desc: a main character is missing, duplicated or deformed. The prompt was fine; \
generate again with the same description.
- regen_refined_desc: the subjects are right but there is a clear, material mismatch in a main \
character's look or in the setting (identity, key clothing or props, the intended place). Give a \
minimally changed keyframe prompt that removes the ambiguity.

When refining: keep the original intent, entities and proper nouns exactly; do not add \
characters, props or story events; only sharpen what was ambiguous (pose, facing, position, \
which state of an entity). For other decisions refined_keyframe_prompt is "".

Answer with JSON only: {"decision": ..., "reasons": [...], "alignment_report": \
{"main_character_count": "ok|missing|duplicate|unclear", "main_character_appearance": \
"ok|partial|mismatch|unclear", "environment": "ok|partial|mismatch|unclear"}, \
"refined_keyframe_prompt": ...}"""

MOTION_REFINER = """\
You rewrite a shot's motion prompt so the clip starts from the accepted keyframe (the image you \
see) and stays physically possible in it.

Start with one short sentence anchoring the first frame: who is where, consistent with the \
keyframe prompt, without listing clothing, props or architecture. Then narrate the action in \
order. Actions and interactions are the heart of the prompt (between characters: words, \
gestures, touch, looks; with props: picking up, using, holding): give them most of the words.

Follow the original motion prompt's sequence of actions exactly: add no new plot beats and drop \
none. Where the keyframe's layout requires it, add the transitional movement the original \
leaves out (turning round, stepping closer) so the action can happen where things actually are. \
The image wins where it disagrees with the keyframe prompt.

No jumps between close and wide framing and no sudden changes of viewpoint within the shot.
Answer with JSON only: {"refined_video_motion_prompt": ...}"""

VIDEO_ANALYZER = """\
You keep a multi-shot video continuous. You see frames sampled from the clip just generated \
(numbered from 0), the entity memory, this shot's motion prompt, and the planned keyframe \
prompt of the next shot. Do two things.

A) Memory updates (entity_updates), at most 4, most important first: main characters, then \
signature props, vehicles or animals, then a signature background. Add an entity only if it is \
(1) a plot-relevant character or prop memory does not have yet, (2) a continuity-critical view \
memory lacks (for example the back of a costume) with base_entity set to the canonical entity, \
or (3) a major lasting change of look (costume change, a coat, scarf or hat added, a serious \
injury, a prop broken or altered) with base_entity set to the original. Compare with memory \
first: never re-add what is there, never rename it, and ignore pose, expression, lighting, \
colour grading, time of day, motion blur and brief occlusion. If nothing qualifies, return an \
empty list. For each update give frame_index, the one sampled frame that shows it most clearly \
(sharp, well lit, unoccluded; any angle that shows the identifying details; for a background the \
frame where it is least covered).

B) The next shot's keyframe prompt (refined_next_shot.keyframe_prompt): keep the planned intent, \
actions, camera position and initial states of the characters; add the continuity facts the \
frames establish (who looks how now, which persistent props and places carry over), keep the \
style consistent, and never change features the plan states. Shots need not continue each \
other's action; continuity is about identities, looks, props and places. The keyframe prompt \
describes the first frame: characters head to toe, the setting, and where they stand in it; \
keep props and camera talk short. Natural prose, no lists or numbering.

Answer with JSON only: {"entity_updates": [{"name": ..., "description": ..., "frame_index": <int>, \
"base_entity": <name or null>}], "refined_next_shot": {"keyframe_prompt": ...}}"""


def memory_summary(entities: Iterable[Any], *, limit_chars: int = 6000) -> str:
    """Known entities as prompt lines: name, kind, base entity, views, description."""
    lines = []
    for e in entities:
        base = f"; evolves from {e.base_entity}" if e.base_entity else ""
        lines.append(f"- {e.name} ({e.kind}{base}; {len(e.views)} reference views): {e.description}")
    text = "\n".join(lines) or "(memory is empty)"
    return text if len(text) <= limit_chars else text[: limit_chars - 20] + "\n... (truncated)"


def feedback_note(errors: list[str], attempt: int) -> str:
    """What is appended to a retried request: the previous answer's problems and the attempt number."""
    listed = "\n".join(f"- {e}" for e in errors)
    return f"\n\nAttempt {attempt}. Your previous answer was rejected:\n{listed}\nAnswer again, fixing these."
