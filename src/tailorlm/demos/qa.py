"""An offline extractive-QA demo: notices of the fictional Highland utility Glenmor Water & Power, in SQuAD JSON.

Why synthetic, like :mod:`tailorlm.demos.classification`: it must run offline, be redistributable, and be
*localized* (made-up tariffs, depots, the "Glimmer" smart meter, Highland places) so that a general model does not
already know it.

Each passage is a notice built from a template whose slot values are recorded with their character offsets, so
every answer is an exact span of its passage. Passages hold several numbers, places and times, so finding the
right one needs the question; a question phrasing may ask for a fact the passage does not hold (SQuAD v2
``is_impossible``). Splits are by passage, so no test passage is seen in training. Deterministic from a seed.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

PLACES = ["Kinlochbrae", "Strathglen", "Auchterbeg", "Portmorran", "Dunmhor", "Glenbuie", "Balnacraig", "Inverluss",
          "Drumlochy", "Achnasheen Mor", "Kilbrannan", "Lochaber Rise"]
STREETS = ["Mill Brae", "Harbour Road", "Tulloch Crescent", "the Croft Lane", "Sraid na h-Eaglais", "Kirk Wynd",
           "Station Brae", "Pier Street"]
DEPOTS = ["Corran", "Fasnacloich", "Tomdoun", "Ardgour", "Glenfinnan", "Rannoch"]
TARIFFS = ["Heather Saver", "Cairn Fixed", "Nightglow", "Peat & Breeze", "Standard Glen", "Bothy Flex"]
SCHEMES = ["Help-Hand plan", "Spread-the-Cost scheme", "Warm Hearth fund", "Winter Ease plan"]
CAUSES = ["a fallen line", "a flooded substation", "storm damage", "a burst main", "a faulty transformer",
          "a lightning strike"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "Hogmanay"]
MONTHS = ["March", "June", "September", "December", "January", "April"]
COLOURS = ["amber", "green", "red", "blue"]
DOCUMENTS = ["a recent bill", "proof of benefits", "a Glimmer reading", "photo ID"]


def _hour(rng: random.Random) -> str:
    return f"{rng.randint(1, 11)}.{rng.choice(['00', '15', '30', '45'])}{rng.choice(['am', 'pm'])}"


SLOT_VALUES: dict[str, Any] = {
    "place": lambda r: r.choice(PLACES),
    "street": lambda r: r.choice(STREETS),
    "depot": lambda r: r.choice(DEPOTS),
    "cause": lambda r: r.choice(CAUSES),
    "day": lambda r: r.choice(DAYS),
    "homes": lambda r: str(r.randint(12, 940)),
    "start": _hour,
    "end": _hour,
    "hours": lambda r: str(r.randint(6, 48)),
    "credit": lambda r: f"£{r.randint(3, 15) * 5}",
    "tariff": lambda r: r.choice(TARIFFS),
    "unit": lambda r: f"{r.randint(18, 34)}.{r.randint(0, 9)}p",
    "standing": lambda r: f"{r.randint(40, 65)}p",
    "month": lambda r: f"{r.choice(MONTHS)} {r.randint(2025, 2028)}",
    "fee": lambda r: f"£{r.randint(2, 12) * 5}",
    "night": lambda r: f"midnight and {r.randint(5, 7)}am",
    "interval": lambda r: r.choice(["every 30 minutes", "every hour", "twice a day", "once a day"]),
    "colour": lambda r: r.choice(COLOURS),
    "phone": lambda r: f"0800 {r.randint(100, 999)} {r.randint(1000, 9999)}",
    "scheme": lambda r: r.choice(SCHEMES),
    "months": lambda r: str(r.randint(6, 36)),
    "document": lambda r: r.choice(DOCUMENTS),
    "weeks": lambda r: str(r.randint(2, 8)),
}

# Passage templates and, per slot, the questions that ask for it. ``{slot}`` inside a question is filled with the
# passage's value of that slot (e.g. the tariff's name); ``?slot`` questions ask for a slot the template lacks.
PASSAGES: list[dict[str, Any]] = [
    {
        "text": "Glenmor Water & Power reported {cause} near {place} on {day}. About {homes} homes on {street} lost "
                "supply at {start}, and engineers from the {depot} depot had the power back on by {end}. Customers "
                "who were off for more than {hours} hours can claim a Storm Credit of {credit}.",
        "questions": {
            "cause": ["What caused the power cut near {place}?", "Why did the supply go off near {place}?"],
            "place": ["Where was the fault reported?", "Which village had the blackie?"],
            "homes": ["How many homes lost supply?", "How many households were affected?"],
            "street": ["Which street lost supply?", "On what street did the power go off?"],
            "start": ["When did the supply go off?", "At what time did the homes lose power?"],
            "end": ["When was the power back on?", "By what time was supply restored?"],
            "depot": ["Which depot sent the engineers?", "Where did the engineers come from?"],
            "hours": ["How many hours must a customer be off to claim?", "After how long off can you claim?"],
            "credit": ["How much is the Storm Credit?", "What is the compo worth?"],
            "?fee": ["How much does leaving the tariff early cost?"],
            "?phone": ["What number should customers ring about the Glimmer?"],
        },
    },
    {
        "text": "The {tariff} tariff costs {unit} per unit with a standing charge of {standing} a day. Prices are "
                "fixed until {month}, and leaving before then costs {fee}. Units used between {night} are billed "
                "at half price on {tariff}.",
        "questions": {
            "unit": ["What is the unit rate on {tariff}?", "How much per unit does {tariff} cost?"],
            "standing": ["What is the standing charge on {tariff}?", "How much is the daily standing charge?"],
            "month": ["Until when are {tariff} prices fixed?", "When does the {tariff} price fix end?"],
            "fee": ["How much does leaving {tariff} early cost?", "What is the exit fee?"],
            "night": ["When are units billed at half price?", "Between which hours are units cheaper?"],
            "?depot": ["Which depot sent the engineers?"],
            "?credit": ["How much is the Storm Credit?"],
        },
    },
    {
        "text": "The Glimmer is the smart meter Glenmor fits in homes around {place}. It sends readings {interval}, "
                "and its light turns {colour} when the credit runs low. If the Glimmer goes blank, customers should "
                "ring {phone} and an engineer from the {depot} depot will visit within {weeks} working days.",
        "questions": {
            "interval": ["How often does the Glimmer send readings?", "How often are readings sent?"],
            "colour": ["What colour does the light turn when credit runs low?", "Which colour warns of low credit?"],
            "phone": ["What number should customers ring if the Glimmer goes blank?", "What is the phone number?"],
            "depot": ["Which depot sends the engineer?", "Where does the engineer come from?"],
            "weeks": ["Within how many working days will an engineer visit?", "How many days until a visit?"],
            "place": ["Where does Glenmor fit the Glimmer?", "Around which town are Glimmers fitted?"],
            "?unit": ["What is the unit rate on the tariff?"],
            "?homes": ["How many homes lost supply?"],
        },
    },
    {
        "text": "Customers in {place} who are struggling to pay can join the {scheme}, which spreads arrears over "
                "{months} months with no interest. To apply, bring {document} to the {depot} office; a decision "
                "is sent within {weeks} working days, and no one on the scheme is cut off in winter.",
        "questions": {
            "scheme": ["Which scheme helps customers who struggle to pay?", "What is the hardship scheme called?"],
            "months": ["Over how many months are arrears spread?", "How long can the arrears be spread over?"],
            "document": ["What should customers bring to apply?", "What do you need to apply for the scheme?"],
            "depot": ["Which office takes applications?", "Where do customers apply?"],
            "weeks": ["How soon is a decision sent?", "Within how many working days is a decision sent?"],
            "?tariff": ["Which tariff has half-price night units?"],
            "?start": ["When did the supply go off?"],
        },
    },
]
_SLOT = re.compile(r"\{(\w+)\}")


def fill(template: str, values: dict[str, str]) -> tuple[str, dict[str, int]]:
    """The filled template and the character start of each slot's first occurrence (the answer span)."""
    parts: list[str] = []
    starts: dict[str, int] = {}
    at = 0
    length = 0
    for match in _SLOT.finditer(template):
        literal = template[at:match.start()]
        parts.append(literal)
        length += len(literal)
        name = match.group(1)
        starts.setdefault(name, length)
        parts.append(values[name])
        length += len(values[name])
        at = match.end()
    parts.append(template[at:])
    return "".join(parts), starts


def _paragraph(rng: random.Random, index: int, unanswerable: float) -> dict[str, Any]:
    spec = PASSAGES[index % len(PASSAGES)]
    values = {name: SLOT_VALUES[name](rng) for name in SLOT_VALUES}
    context, starts = fill(spec["text"], values)
    qas = []
    for slot, phrasings in spec["questions"].items():
        question = fill(rng.choice(phrasings), values)[0]
        if slot.startswith("?"):
            if rng.random() < unanswerable:
                qas.append({"id": f"p{index}-{slot[1:]}-none", "question": question, "answers": [],
                            "is_impossible": True})
            continue
        answer = values[slot]
        qas.append({"id": f"p{index}-{slot}", "question": question, "is_impossible": False,
                    "answers": [{"text": answer, "answer_start": starts[slot]}]})
    return {"context": context, "qas": qas}


def generate_qa_dataset(
    out_dir: str | Path, seed: int = 13, n_passages: int = 160, unanswerable: float = 0.25,
    shares: tuple[float, float] = (0.1, 0.2),
) -> dict[str, Path]:
    """Write train.json, validation.json and test.json (SQuAD v2 format) under ``out_dir``; split by passage.

    ``unanswerable`` is the chance that each "not in this passage" question is included (0 gives SQuAD v1.1-like
    data); ``shares`` are the validation and test fractions of the passages.
    """
    rng = random.Random(seed)
    paragraphs = [_paragraph(rng, i, unanswerable) for i in range(n_passages)]
    rng.shuffle(paragraphs)
    n_val, n_test = max(1, round(shares[0] * n_passages)), max(1, round(shares[1] * n_passages))
    splits = {"validation": paragraphs[:n_val], "test": paragraphs[n_val:n_val + n_test],
              "train": paragraphs[n_val + n_test:]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, group in splits.items():
        document = {"version": "v2.0", "data": [{"title": f"Glenmor notices ({name})", "paragraphs": group}]}
        paths[name] = out / f"{name}.json"
        paths[name].write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return {name: paths[name] for name in ("train", "validation", "test")}
