"""Reading who and what recurs in shot prompts, by fixed rules: names, places, people and props.

Pure functions over text: no model, no randomness, no I/O, no clock. The same prompts always give
the same findings, so a plan derived from them is the same on every run, resume and replay.

Rules (each is deliberately simple; what they miss is missed, never invented):
- a *name* is a capitalised word, in two or more shots, that is never written in lower case anywhere
  in the story, is not a common sentence opener, title, camera term or a word of the lists below, and
  is not a word ending in -ly/-ing/-ed that only ever opens a sentence. Adjacent names ("Mia Chen")
  are one subject, called by its most frequent word; a title before a name ("Captain Reyes") is dropped;
- a *place* is a noun from a fixed list of settings (harbor, kitchen, living room, ...); a shot's
  setting is the first place after a locative preposition (in, at, on, inside, ...), else the first
  place it mentions. Places are keyed by their head noun ("the quiet harbor" and "the harbor" are one
  place); a compound of two place words keeps both ("bakery kitchen");
- a *person* (unnamed: "the old fisherman") and a *prop* ("a brass lantern") are nouns from fixed
  lists, keyed by that noun. Clothing is not a prop: it is part of how someone looks;
- a description is the phrase where the subject is first described: an apposition ("Mia, a young
  woman in a grey coat, ..."), a parenthesis, "a fox named Rufus", or the noun phrase with its
  "with/in/wearing ..." tail; failing all of those, the first sentence that mentions it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")

PLACE_NOUNS = frozenset("""
    alley apartment arena attic balcony bakery bar barn basement bathroom bay beach bedroom boat bridge
    cabin cafe café canyon castle cave cellar chapel church classroom cliff clearing clinic corridor cottage
    courtyard deck den desert diner dock lane dungeon farm farmhouse field forest garage garden glade greenhouse
    gym hall hallway harbor harbour hill hospital hotel house hut island jungle kitchen laboratory lab lake
    library lighthouse lobby loft market meadow mill mine monastery mountain museum office orchard palace
    park parlor pier plaza pond porch port prison pub quay restaurant river riverbank road roof rooftop
    room ruins school shop shore square stable stage station store street studio subway swamp temple
    terrace theater theatre tower town train tunnel valley village vineyard warehouse waterfall wharf
    woods workshop yard shipyard ship spaceship gallery platform marketplace lagoon coast cove camp
    campsite tent bookstore bookshop classroom auditorium cathedral mansion manor observatory
""".split())
PLACE_COMPOUNDS = frozenset({
    "living room", "dining room", "throne room", "control room", "waiting room", "train station",
    "bus stop", "night market", "city street", "fish market", "market square", "town square",
    "tea house", "coffee shop", "flower shop", "fire station", "police station", "space station",
})
PERSON_NOUNS = frozenset("""
    man woman boy girl child kid baby toddler teenager teen lady gentleman grandmother grandfather grandma
    grandpa mother father mom dad mum son daughter brother sister king queen prince princess knight wizard
    witch soldier sailor fisherman farmer baker chef doctor nurse teacher student detective robot dog cat
    puppy kitten fox rabbit bear wolf owl bird horse dragon mouse deer monkey musician painter artist
    stranger traveler traveller keeper captain pilot astronaut explorer merchant monk nun priest guard
""".split())
PROP_NOUNS = frozenset("""
    lantern umbrella box letter map key book phone cake bowl cup mug bottle bag backpack suitcase guitar
    violin piano bicycle bike kite ball balloon bouquet ring necklace watch clock lamp candle sword shield
    wand staff basket blanket toy doll teddy drum photo photograph picture painting notebook journal diary
    pen pencil paintbrush canvas telescope compass jar coin ticket envelope package parcel gift present
    crown mask axe rope net rod bucket shovel ladder radio laptop computer tablet knife spoon plate pot
    kettle teapot tray bread loaf pie apple egg seedling sapling mirror vase statue flag sign poster
    scroll potion torch flashlight feather shell stone pebble crystal gem
    birdcage skateboard surfboard wagon cart sled trophy medal locket bracelet anchor helmet
""".split())
_TITLES = frozenset("mr mrs ms miss dr doctor captain professor sir madam lady lord king queen prince "
                    "princess aunt uncle grandma grandpa officer detective sergeant saint st little old "
                    "young".split())
_OPENERS = frozenset("""
    a an the this that these those it its he she they them his her their we our you your i my me us
    and but or so then as while when where after before during until once if because though although
    in on at by to from of for with without into onto over under above below behind beside between near
    inside outside across through along around toward towards up down out off back away
    close closeup medium wide long full extreme establishing aerial overhead low high tracking pan tilt
    zoom dolly crane handheld static slow fast cut fade dissolve shot camera scene frame pov cu ecu ms ws
    interior exterior int ext day night morning evening afternoon dawn dusk noon midnight sunset sunrise
    later meanwhile suddenly finally now soon still just only even also both all each every some many
    one two three four five six seven eight nine ten first second third last next another other
    there here what who why how yes no not
    is are was were be been being has have had do does did will would can could should may might must
""".split())
_LOCATIVE = frozenset("in at on inside into onto by near outside across through along within around "
                      "under beneath over down".split())
_POSSESSIVES = frozenset("his her their its my our your".split())
_DETERMINERS = frozenset({"a", "an", "the", "this", "that", *_POSSESSIVES})
_TAIL_OPENERS = frozenset("with in wearing dressed holding carrying full filled lined covered made of "
                          "where lit under overlooking surrounded".split())
_PARTICLES = frozenset("to up down out off away back past toward towards into onto across".split())
_FUNCTION = _OPENERS | _LOCATIVE | _DETERMINERS


def sentences(text: str) -> list[str]:
    """The sentences (and ;/: clauses) of a prompt, stripped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _bare(token: str) -> str:
    return re.sub(r"['’]s?$", "", token)


def _singular(word: str, lexicon: frozenset[str]) -> str:
    if word in lexicon:
        return word
    for cut in ("es", "s"):
        if word.endswith(cut) and word[: -len(cut)] in lexicon:
            return word[: -len(cut)]
    return word


# ---------------------------------------------------------------------------- names


def _is_name_shape(word: str) -> bool:
    return len(word) >= 2 and word[0].isupper() and any(c.islower() for c in word[1:])


@dataclass(frozen=True)
class Named:
    """A recurring named subject: its name, the words that refer to it, and the texts that mention it."""

    name: str
    aliases: tuple[str, ...]
    shots: tuple[int, ...]

    def mentioned_in(self, text: str) -> bool:
        return any(re.search(rf"\b{re.escape(w)}(?:['’]s?)?\b", text) for w in self.aliases)

    def first_at(self, text: str) -> int:
        hits = [m.start() for w in self.aliases for m in re.finditer(rf"\b{re.escape(w)}\b", text)]
        return min(hits, default=len(text))


def _name_occurrences(texts: list[str]) -> tuple[list[tuple[int, str]], set[str], list[tuple[str, str]]]:
    """(text index, word) of every capitalised candidate; those seen inside a sentence; adjacent pairs."""
    lower_vocab = {w for t in texts for w in _WORD.findall(t) if w.islower()}
    occurrences: list[tuple[int, str]] = []
    inside: set[str] = set()
    links: list[tuple[str, str]] = []
    for i, text in enumerate(texts):
        for sentence in sentences(text):
            previous: tuple[str, int] | None = None
            for n, m in enumerate(_WORD.finditer(sentence)):
                word = _bare(m.group())
                low = word.lower()
                if (not _is_name_shape(word) or low in lower_vocab or low.split("-")[0] in _OPENERS
                        or low in _TITLES or low in PLACE_NOUNS or low in PERSON_NOUNS or low in PROP_NOUNS):
                    previous = None
                    continue
                occurrences.append((i, word))
                if n > 0:
                    inside.add(word)
                if previous is not None and sentence[previous[1]:m.start()].strip() == "":
                    links.append((previous[0], word))
                previous = (word, m.end())
    return occurrences, inside, links


def named_subjects(texts: list[str]) -> list[Named]:
    """The names that recur in two or more of ``texts``, in order of first mention."""
    occurrences, inside, links = _name_occurrences(texts)
    counts = Counter(w for _, w in occurrences)
    order = list(dict.fromkeys(w for _, w in occurrences))
    names = [w for w in order if w in inside or not w.lower().endswith(("ly", "ing", "ed"))]
    group = {w: w for w in names}

    def root(w: str) -> str:
        while group[w] != w:
            w = group[w]
        return w

    for a, b in links:
        if a in group and b in group and root(a) != root(b):
            group[root(b)] = root(a)
    members: dict[str, list[str]] = {}
    for w in names:
        members.setdefault(root(w), []).append(w)
    found: list[Named] = []
    for words in members.values():
        canonical = max(words, key=lambda w: (counts[w], -words.index(w)))
        shots = tuple(sorted({i for i, w in occurrences if w in words}))
        if len(shots) >= 2:
            found.append(Named(canonical, tuple(words), shots))
    return sorted(found, key=lambda n: (n.shots[0], n.first_at(texts[n.shots[0]])))


def describe_name(named: Named, text: str) -> str:
    """How ``text`` first describes ``named``: apposition, parenthesis, "named X", else the sentence."""
    for sentence in sentences(text):
        for word in named.aliases:
            w = re.escape(word)
            if not re.search(rf"\b{w}\b", sentence):
                continue
            called = re.search(rf"\b((?:a|an)\s[^,.;:!?()]*?)\s+(?:named|called)\s+{w}\b", sentence)
            if called:
                return called.group(1).strip()
            paren = re.search(rf"\b{w}(?:\s+[A-Z]\w+)?\s*\(([^)]+)\)", sentence)
            if paren:
                return paren.group(1).strip()
            appos = re.search(rf"\b{w}(?:\s+[A-Z]\w+)?\s*,\s*(.+)$", sentence)
            taken: list[str] = []
            for clause in (c.strip() for c in appos.group(1).split(",")) if appos else ():
                first = clause.split(" ", 1)[0].lower()
                opener = first in ("a", "an", "the", "who", "whose", *_TAIL_OPENERS)
                if (not taken and opener) or (taken and (first in _TAIL_OPENERS or first in ("her", "his"))):
                    taken.append(clause)
                else:
                    break
            if taken:
                return ", ".join(taken).rstrip(".;:!? ")
            return sentence.rstrip(".;:!? ")[:240]
    return named.name


# ---------------------------------------------------------------------------- nouns from the lists


@dataclass(frozen=True)
class NounMention:
    """One mention of a listed noun: its key (the head noun, or a compound), the phrase, and where."""

    key: str
    head: str
    phrase: str
    start: int
    locative: bool


def _verb_like(token: str, following: str) -> bool:
    """A word ending in -s that a determiner, preposition or adverb follows reads as a verb ("opens the")."""
    return token.endswith("s") and not token.endswith("ss") and (
        following in _DETERMINERS or following in _LOCATIVE or following in _PARTICLES or following.endswith("ly"))


def _phrase_end(text: str, tokens: list[tuple[str, int, int]], k: int) -> int:
    """Where the phrase of the noun at ``k`` ends: after its "with/in/wearing ..." tail, if it has one."""
    end = tokens[k][2]
    if k + 1 >= len(tokens) or tokens[k + 1][0] not in _TAIL_OPENERS:
        return end
    stop = re.search(r"[,.;:!?]", text[end:])
    limit = end + (stop.start() if stop else len(text) - end)
    for j in range(k + 1, min(len(tokens), k + 14)):
        word, start, word_end = tokens[j]
        if start >= limit:
            break
        following = tokens[j + 1][0] if j + 1 < len(tokens) and tokens[j + 1][1] < limit else ""
        if j > k + 1 and _verb_like(word, following):
            break
        end = word_end
    return end


def _noun_key(tokens: list[tuple[str, int, int]], k: int, lexicon: frozenset[str],
              compounds: frozenset[str]) -> tuple[str, str, int] | None:
    """(key, head, index of its first word) if the token at ``k`` ends a listed noun, else None."""
    word = tokens[k][0]
    following = tokens[k + 1][0] if k + 1 < len(tokens) else ""
    head = _singular(word, lexicon)
    if k and f"{tokens[k - 1][0]} {word}" in compounds:
        return f"{tokens[k - 1][0]}_{word}", head, k - 1
    if head not in lexicon:
        return None
    if f"{word} {following}" in compounds or _singular(following, lexicon) in lexicon:
        return None  # the first word of a compound ("bakery kitchen"): found at its last word
    previous = _singular(tokens[k - 1][0], lexicon) if k else ""
    if previous in lexicon and tokens[k - 1][2] + 1 >= tokens[k][1]:
        return f"{previous}_{head}", head, k - 1
    return head, head, k


def noun_mentions(text: str, lexicon: frozenset[str], *, compounds: frozenset[str] = frozenset()) -> list[NounMention]:
    """Every mention of a noun of ``lexicon`` (or a listed compound) in ``text``, in order."""
    tokens = [(_bare(m.group().lower()), m.start(), m.end()) for m in _WORD.finditer(text)]
    found: list[NounMention] = []
    for k in range(len(tokens)):
        keyed = _noun_key(tokens, k, lexicon, compounds)
        if keyed is None:
            continue
        key, head, first = keyed
        begin = first
        while begin > 0 and first - begin < 4 and tokens[begin - 1][0] not in _FUNCTION - _DETERMINERS:
            begin -= 1
            if tokens[begin][0] in _DETERMINERS:
                break
        if tokens[begin][0] not in _DETERMINERS:
            begin = first
        locative = begin > 0 and tokens[begin - 1][0] in _LOCATIVE
        phrase = text[tokens[begin][1]:_phrase_end(text, tokens, k)].strip()
        if tokens[begin][0] in _POSSESSIVES:  # "her workshop" describes the workshop, not whose it is
            phrase = "the" + phrase[len(tokens[begin][0]):]
        elif tokens[begin][0] not in _DETERMINERS:
            phrase = f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"
        else:
            phrase = phrase[:1].lower() + phrase[1:]
        found.append(NounMention(key, head, phrase, tokens[begin][1], locative))
    return found


def setting_of(text: str) -> NounMention | None:
    """The place a shot is set in: the first place after a locative preposition, else the first place."""
    places = noun_mentions(text, PLACE_NOUNS, compounds=PLACE_COMPOUNDS)
    return next((p for p in places if p.locative), places[0] if places else None)


def place_name(key: str) -> str:
    """The entity name of a place key (``bakery_kitchen`` -> ``bg_bakery_kitchen``)."""
    return "bg_" + re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def cap_new_per_shot(mentions: list[list[str]], limit: int, known: set[str] | None = None) -> list[list[str]]:
    """Each shot's names in order, keeping at most ``limit`` first appearances per shot (the rest wait
    for their next mention); ``known`` names are in memory before the first shot."""
    introduced = set(known or ())
    out: list[list[str]] = []
    for names in mentions:
        shot: list[str] = []
        new = 0
        for name in dict.fromkeys(names):
            if name not in introduced:
                if new == limit:
                    continue
                new += 1
            shot.append(name)
        introduced.update(shot)
        out.append(shot)
    return out


def setting_name(text: str) -> str:
    """The ``bg_`` name of a setting description: its place, else its first three content words."""
    place = setting_of(text)
    if place is not None:
        return place_name(place.key)
    words = [w for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in _FUNCTION]
    return place_name("_".join(words[:3]) or "setting")
