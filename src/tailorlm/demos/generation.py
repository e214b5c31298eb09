"""The generation demo: customer questions to Glenmor Water & Power and the answers its own staff would give.

Why: a general instruction-tuned model answers a Highland utility's customers generically ("contact your
provider"); the team's answers use the local vocabulary (the Glimmer smart meter, a "blackie" power cut, the
Heather Saver and Cairn Fixed tariffs, the Help-Hand plan, Storm Credit) and its own procedures. Fine-tuning
on these pairs should lower the held-out perplexity of such answers and make sampled answers sound like Glenmor.

Deterministic from a seed (the same seed writes byte-identical files), offline, and redistributable. Questions
are built from topic templates with slot values; each topic has a fixed answer pattern with the same slots, so
an answer is learnable from its question. Test prompts use phrasings reserved for test, as in the
classification demo, so the test split measures new ways of asking.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

SLOTS: dict[str, list[str]] = {
    "place": ["Kinlochbrae", "Strathglen", "Auchterbeg", "Portmorran", "Dunmhor", "Glenbuie", "Balnacraig",
              "Inverluss"],
    "tariff": ["Heather Saver", "Cairn Fixed"],
    "hours": ["3", "6", "12", "19", "26", "40"],
    "date": ["Friday", "the 14th", "next Monday", "the 1st", "Thursday"],
    "reading": ["04512", "11873", "23090", "30417", "48266", "52981", "67120", "78804"],
    "amount": ["84", "126", "212", "340", "415", "590"],
}

#: topic -> (train phrasings, test-only phrasings, answer). Every {slot} in an answer appears in its questions.
TOPICS: dict[str, tuple[list[str], list[str], str]] = {
    "power_cut": (
        ["There's a blackie in {place}, when will the power be back?", "The power's off in {place}, what do I do?",
         "We've nae power in {place}, is there a fault?"],
        ["Lights are oot across {place}, any news?"],
        "Sorry about the blackie in {place}. Our engineers are on it; check the live map in the Glenmor app or "
        "phone 0800 321 105 (free, 24 hours). If you are on the Priority Register we will call you with updates.",
    ),
    "storm_credit": (
        ["We were off for {hours} hours in {place}, can I get Storm Credit?",
         "Am I due compo after a {hours} hour blackie in {place}?"],
        ["Lost power {hours} hours in {place}, do I get anything back?"],
        "After a blackie of {hours} hours in {place} you may be due Storm Credit: it is paid automatically for "
        "cuts over 12 hours, straight onto your Glenmor account within 28 days. No form needed.",
    ),
    "meter_reading": (
        ["My Glimmer reading is {reading}, can you log it?", "Here's my reading from the Glimmer: {reading}"],
        ["Numbers on the Glimmer are {reading}, pop that on my account"],
        "Thanks, reading {reading} is logged. Your Glimmer normally sends readings itself every half hour; if it "
        "shows a red light, hold the button for five seconds to reconnect it.",
    ),
    "glimmer_blank": (
        ["The Glimmer screen has gone blank, is it broken?", "My Glimmer's display is dead, what now?",
         "Nothing showing on the Glimmer, what should I do?", "Why is my Glimmer blank?"],
        ["The wee Glimmer box has nothing on it, help", "Glimmer's gone dark, is that bad?"],
        "A blank Glimmer usually just needs a restart: switch it off at the wall for ten seconds. Your supply is "
        "not affected. If it stays blank, book a free Glimmer check in the Glenmor app.",
    ),
    "tariff_switch": (
        ["Can I switch to {tariff}?", "I want to move onto {tariff}, how do I do it?"],
        ["Put me on {tariff} please"],
        "Yes, you can switch to {tariff} in the Glenmor app under My Tariff, or by phone. There is no exit fee; "
        "the switch starts at your next Glimmer reading.",
    ),
    "tariff_compare": (
        ["What's the difference between Heather Saver and Cairn Fixed?",
         "Should I pick Heather Saver or Cairn Fixed?", "Explain Heather Saver versus Cairn Fixed",
         "Is Cairn Fixed better than Heather Saver?"],
        ["Heather Saver or Cairn Fixed, which is better for me?",
         "Which tariff is cheaper, Heather Saver or Cairn Fixed?"],
        "Heather Saver follows the market and is cheapest overnight, so it suits homes with storage heaters. "
        "Cairn Fixed keeps the same unit price for 18 months, so your bills are predictable.",
    ),
    "hardship": (
        ["I can't pay my bill of £{amount}, is there any help?", "Struggling to pay £{amount} this month"],
        ["Cannae afford the £{amount} bill, what are my options?"],
        "We can help with the £{amount}. The Help-Hand plan spreads it into small weekly payments with no "
        "interest, and the Glenmor hardship fund can clear part of it. Call 0800 321 106 and ask for Help-Hand.",
    ),
    "moving": (
        ["We're flitting from {place} on {date}, what do I need to do?",
         "Moving out of {place} on {date}, how do I close my account?"],
        ["Leaving {place} on {date}, can you sort my account?"],
        "Good luck with the flit from {place}. Give us a Glimmer reading on {date} in the app and your final "
        "bill follows within 10 days; any credit is refunded to your bank.",
    ),
    "scam": (
        ["I got a text from Glenmor asking for my card details, is it real?",
         "Someone phoned saying they're Glenmor and want my bank details",
         "Got an email from Glenmor with a link to update my bank details, genuine?",
         "Does Glenmor ever text asking for card details?"],
        ["Is this message from Glenmor legit? It wants my card number",
         "A man on the phone says he's from Glenmor and wants my PIN, is that you?"],
        "That is not us: Glenmor never asks for card or bank details by text or phone. Do not reply; forward the "
        "text to 7726 and report it on 0800 321 107.",
    ),
}


def _fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def _candidates(topic: str, held_out: bool) -> list[dict[str, str]]:
    """Every distinct (prompt, response) of a topic: its phrasings times the values of the slots they use."""
    train_forms, test_forms, answer = TOPICS[topic]
    rows: list[dict[str, str]] = []
    for form in test_forms if held_out else train_forms:
        names = sorted(set(re.findall(r"\{(\w+)\}", form)))
        for combo in itertools.product(*(SLOTS[name] for name in names)):
            values = dict(zip(names, combo, strict=True))
            rows.append({"prompt": _fill(form, values), "response": _fill(answer, values), "topic": topic})
    return rows


def _pairs(rng: random.Random, held_out: bool, n: int, seen: set[str]) -> list[dict[str, str]]:
    """Up to n unique pairs, topics round-robin (a topic whose phrasings are used up is skipped).

    ``seen`` keeps every prompt unique across splits.
    """
    pools = {topic: [r for r in _candidates(topic, held_out) if r["prompt"] not in seen] for topic in TOPICS}
    for pool in pools.values():
        rng.shuffle(pool)
    rows: list[dict[str, str]] = []
    while len(rows) < n and any(pools.values()):
        for topic in TOPICS:
            if pools[topic] and len(rows) < n:
                row = pools[topic].pop()
                seen.add(row["prompt"])
                rows.append(row)
    return rows


def generate_generation_demo(out_dir: Path, seed: int = 13, n_train: int = 180, n_validation: int = 27,
                             n_test: int = 27) -> dict[str, Path]:
    """Write train/validation/test.jsonl (prompt, response) and return their paths.

    Validation uses the training phrasings (other slot values); test uses phrasings never seen in training.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    splits = {
        "train": _pairs(rng, False, n_train, seen),
        "validation": _pairs(rng, False, n_validation, seen),
        "test": _pairs(rng, True, n_test, seen),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split, rows in splits.items():
        path = out / f"{split}.jsonl"
        lines = [json.dumps({"prompt": r["prompt"], "response": r["response"]}, ensure_ascii=False) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[split] = path
    return paths
