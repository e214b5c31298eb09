"""The embedded demo dataset: customer messages to a fictional Highland utility, Glenmor Water & Power.

Why synthetic: the demo must run offline, be redistributable and be *localized* the way a real team's data
is (made-up tariff names, a smart meter with a nickname, Scots and Gaelic, typos), so that a general
pretrained model is visibly worse on it than a model tuned on it.

Why it is hard for the baselines yet learnable by fine-tuning:

* every message is built from an intent-specific *template family*; whole families (and a few slang
  variants) are reserved for the test split, so the test measures new phrasings of known intents;
* most messages carry an aside or a negation in *another* intent's vocabulary ("got compo after the last
  blackie", "not switching tariff,"), so topic words are a poor guide to the label: what the customer
  asks for is;
* greetings, account numbers, places and sign-offs dilute mean-pooled sentence embeddings.

A human can still tell every message's intent: there is no label noise.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DEMO_LABEL_DESCRIPTIONS: dict[str, str] = {
    "outage_report": "The customer reports that their electricity or water supply is off and wants it fixed.",
    "outage_compensation": "The customer asks for compensation or a credit because of a power cut.",
    "billing_dispute": "The customer says their bill is wrong and disputes the charges.",
    "meter_reading": "The customer submits a meter reading.",
    "payment_hardship": "The customer cannot afford to pay and asks for a payment plan or instalments.",
    "moving_home": "The customer is moving house and wants to open or close their account.",
    "tariff_switch": "The customer wants to change to a different tariff or price plan.",
    "staff_complaint": "The customer complains about the behaviour of an engineer or staff member.",
    "scam_report": "The customer reports a suspicious message, call or visitor pretending to be the company.",
}
DEMO_LABELS: list[str] = list(DEMO_LABEL_DESCRIPTIONS)

# Fractions of n_rows; the rest is test. Validation is drawn from the training families (see _split_plan).
TRAIN_FRACTION = 0.7
VALIDATION_FRACTION = 0.1

# Slot values shared by every split. Local jargon: the smart meter is "the Glimmer", a power cut is a
# "blackie", moving house is "flitting", tariffs and help schemes have made-up names.
SLOTS: dict[str, list[str]] = {
    "meter": ["the Glimmer", "my Glimmer", "the glimmer box", "the Glimmer meter", "the smart meter"],
    "outage": ["a power cut", "a blackie", "the outage", "a supply fault", "the big blackout", "the cut"],
    "power_off": [
        "the power's off",
        "we've nae power",
        "the lights are oot",
        "the electric's gone",
        "the supply's dead",
        "the water's off",
        "nae water in the taps",
        "everything's went off",
    ],
    "tariff": ["Heather Saver", "Cairn Fixed", "Nightglow", "Peat & Breeze", "Standard Glen"],
    "tariff2": ["Heather Saver", "Cairn Fixed", "Nightglow", "Peat & Breeze", "Standard Glen"],
    "scheme": ["the Help-Hand plan", "Spread-the-Cost", "a Help-Hand arrangement", "the hardship fund"],
    "credit": ["Storm Credit", "compo", "the storm credit", "a goodwill payment", "money back"],
    "bill": ["my bill", "the latest bill", "this quarter's bill", "the statement", "my Glenmor bill"],
    "place": [
        "Kinlochbrae",
        "Strathglen",
        "Auchterbeg",
        "Portmorran",
        "Dunmhor",
        "Glenbuie",
        "Balnacraig",
        "the Braeside estate",
        "Inverluss",
    ],
    "street": ["Mill Brae", "Harbour Road", "Tulloch Crescent", "the Croft Lane", "Sraid na h-Eaglais", "Kirk Wynd"],
    "time": ["since last night", "since 6am", "for 3 hours now", "since Tuesday", "all morning", "since teatime"],
    "past": ["last week", "on Sunday", "during the storm", "over the weekend", "on Hogmanay"],
    "date": ["Friday", "the 14th", "end of the month", "next Monday", "the 1st", "Thursday week"],
    "staff": [
        "your engineer",
        "the lad who came out",
        "the woman on the phone",
        "the call centre guy",
        "the meter fitter",
        "your contractor",
    ],
    "month": ["March", "June", "October", "December", "last month"],
}

# Slang that only ever appears in test messages: the tuned model has to cope with some unseen words too.
HELD_OUT_SLOTS: dict[str, list[str]] = {
    "meter": ["the wee blinker"],
    "power_off": ["we're sat in the dark"],
    "credit": ["something back"],
}


@dataclass(frozen=True)
class Family:
    """A group of phrasings of one intent; a family is either all-train or all-test, never both."""

    intent: str
    name: str
    variants: tuple[str, ...]
    held_out: bool = False


def _families(intent: str, train: list[list[str]], test: list[list[str]]) -> list[Family]:
    """Number an intent's families so that their ids are stable: f0..fN train, then the held-out ones."""
    out = [Family(intent, f"f{i}", tuple(v)) for i, v in enumerate(train)]
    out += [Family(intent, f"f{len(train) + i}", tuple(v), held_out=True) for i, v in enumerate(test)]
    return out


FAMILIES: list[Family] = [
    *_families(
        "outage_report",
        [
            ["{power_off} {time} in {place}, can someone look at it", "{power_off} at ours {time}, is there a fault?"],
            ["reporting {outage} on {street}, whole street's affected", "want to report {outage}, {power_off} {time}"],
            ["is there a known fault near {place}? {power_off}", "any idea when it'll be back on? {power_off}"],
            ["{meter} is blank and {power_off}, please send someone", "get an engineer out, {power_off} {time}"],
        ],
        [
            ["how long till we're back on in {place}? {power_off} {time}", "when will it be fixed? {power_off}"],
            ["{power_off} again, third time this month, kids are freezing", "{power_off} on {street}, nothing works"],
        ],
    ),
    *_families(
        "outage_compensation",
        [
            ["can I claim {credit} for {outage} {past}?", "how do I get {credit} after {outage} {past}"],
            ["we were off for 19 hours {past}, am I due {credit}?", "off 2 days with {outage}, want {credit}"],
            ["lost a freezer full of food after {outage}, want {credit}", "binned all our food after {outage}"],
            ["how do I apply for {credit}? {outage} lasted ages", "is {credit} paid automatically after {outage}?"],
        ],
        [
            ["put {credit} on my account for {outage} {past} please", "we're owed {credit} for {outage}"],
            ["who pays for the food we lost when {outage} hit {place}?", "I expect {credit} for being cut off"],
        ],
    ),
    *_families(
        "billing_dispute",
        [
            ["{bill} is £{amount}, that can't be right", "£{amount} for {month}?? that's wrong"],
            ["you've charged me twice for {month}", "there's a double charge on {bill}"],
            ["{bill} is an estimate not from {meter}, please recalculate", "estimated bill again, it's way over"],
            ["why has {bill} gone up to £{amount}? I want it checked", "{bill} has doubled, please check it"],
        ],
        [
            ["{bill} is wrong, I dispute the charges", "the amount on {bill} can't be right, check it"],
            ["there's a charge for {tariff} on {bill} but I never signed up to it", "{bill} charges me wrong"],
        ],
    ),
    *_families(
        "meter_reading",
        [
            ["{meter} reading today is {reading}", "{meter} reading: {reading}"],
            ["here's my reading {reading}", "reading for this month {reading}"],
            ["submitting reading {reading} for {meter}", "submit reading {reading} please"],
            ["{meter} says {reading} as of {date}", "{meter} shows {reading} today"],
        ],
        [
            ["numbers on {meter} are {reading}, pop that on my account", "the numbers are {reading} today"],
            ["readin {reading} day and {reading} night for {tariff}", "latest figures {reading}"],
        ],
    ),
    *_families(
        "payment_hardship",
        [
            ["I can't afford {bill} this month, can I go on {scheme}?", "can't pay {bill}, is {scheme} open?"],
            ["lost my job, need to spread the payments", "been laid off, need more time to pay"],
            ["can I pay the £{amount} in instalments?", "can I split the £{amount} into smaller payments"],
            ["struggling with money, can we set up {scheme}?", "really skint, any chance of {scheme}?"],
        ],
        [
            ["is there any help for folk who cannae pay? {bill} is too much", "any support if I can't pay?"],
            ["can I pay a wee bit each week instead of the lot at once", "can I pay it off bit by bit"],
        ],
    ),
    *_families(
        "moving_home",
        [
            ["we're flitting to {place} on {date}, close my account", "flitting {date}, close the account"],
            ["moving out on {date}, final reading will be {reading}", "leaving {street} {date}, final bill pls"],
            ["just moved into {street}, put the account in my name", "new here at {street}, set me up"],
            ["I'm leaving the flat on {date}, what do I need to do", "moving out of {place} {date}, what now"],
        ],
        [
            ["new tenant at {street}, put the account in my name", "just moved in to {place}, need a new account"],
            ["we're flitting on {date}, close the account at {street}", "flitting to {place}, move my account"],
        ],
    ),
    *_families(
        "tariff_switch",
        [
            ["I want to switch to {tariff}", "switch me to {tariff} please"],
            ["can you move me off {tariff2} onto {tariff}?", "move me from {tariff2} to {tariff}"],
            ["is {tariff} cheaper than {tariff2}? if so change me", "change me to whatever's cheapest"],
            ["please change my tariff to {tariff} from {date}", "change my tariff to {tariff}"],
        ],
        [
            ["switch me over to {tariff} please", "change me onto {tariff} instead"],
            ["fed up with {tariff2}, switch me to {tariff}", "change my plan to {tariff} from {date}"],
        ],
    ),
    *_families(
        "staff_complaint",
        [
            ["{staff} was really rude to me", "{staff} was so rude on {date}"],
            ["I want to complain about {staff}, left mud all over the carpet", "complaint about {staff}"],
            ["{staff} never turned up on {date} and nobody phoned", "{staff} didn't show, wasted my day off"],
            ["{staff} hung up on me when I asked about {bill}", "{staff} hung up on me twice"],
        ],
        [
            ["disgusted by how {staff} spoke to my mum", "{staff} shouted at my wife"],
            ["{staff} was swearing and smoking in my hallway", "{staff} was a disgrace, no manners"],
        ],
    ),
    *_families(
        "scam_report",
        [
            ["got a text saying it's Glenmor asking for my card details, is it real?", "dodgy text about my card"],
            ["someone phoned claiming to be Glenmor offering {credit}, is this a scam?", "scam call about {credit}?"],
            ["a man at the door said he was here to check {meter}, no ID", "guy at the door, no ID, says Glenmor"],
            ["email says I'm owed £{amount}, link looks dodgy", "email with a dodgy link about a £{amount} refund"],
        ],
        [
            ["is this legit? message says you'll cut me off unless I pay £{amount} now", "is this text legit?"],
            ["think someone's pretending to be Glenmor, wanted my bank details", "someone's faking being you"],
        ],
    ),
]

# Asides that use an intent's vocabulary without asking for it (past events, third parties, "all fine now").
# One is added to most messages of *other* intents, so topic words are a poor guide to the label.
ASIDES: dict[str, list[str]] = {
    "outage_report": ["We had {outage} {past} but it's back on now.", "Power went off {past}, all fine now."],
    "outage_compensation": ["Got {credit} after the last blackie, no bother.", "Neighbour got {credit} for the cut."],
    "billing_dispute": ["{bill} looks right for once.", "Last bill was wrong but you sorted it."],
    "meter_reading": ["Sent my reading in {past}.", "{meter} reading's on the app already."],
    "payment_hardship": ["I've always paid on time.", "Was on {scheme} years ago."],
    "moving_home": ["We moved in {month}.", "We flitted here {past}."],
    "tariff_switch": ["Switched to {tariff} {past}.", "I'm on {tariff}, happy with it."],
    "staff_complaint": ["{staff} was lovely by the way.", "The engineer {past} was great."],
    "scam_report": ["Had a scam text {past} too, ignored it.", "Your scam warning letter came."],
}

# Negated requests: "not after compo, ..." names another intent's vocabulary while ruling it out.
NEGATIONS: dict[str, list[str]] = {
    "outage_report": ["No fault to report,", "Power's fine,"],
    "outage_compensation": ["Not after {credit},", "Not wanting money back,"],
    "billing_dispute": ["Not disputing {bill},", "The bill's correct,"],
    "meter_reading": ["Not a meter reading,", "Not about {meter},"],
    "payment_hardship": ["I can pay fine,", "No money worries,"],
    "moving_home": ["Not moving house,", "We're not flitting,"],
    "tariff_switch": ["Not switching tariff,", "Happy on {tariff},"],
    "staff_complaint": ["Not complaining about anyone,", "Staff were fine,"],
    "scam_report": ["Not a scam thing,", "Nothing dodgy,"],
}

GREETINGS = ["Hi,", "Hello,", "Hiya", "Morning,", "Evening,", "Dear Glenmor,", "Halò,", "Hi there", "Aye,"]
SIGN_OFFS = ["Thanks", "Cheers, Morag", "Tapadh leibh", "ta", "Regards, D. MacLeod", "mòran taing", "Ewan"]
ABBREVIATIONS = {"please": "pls", "thanks": "thx", "account": "acc", "because": "cos", "you": "u", "your": "ur"}


def _account(rng: random.Random) -> str:
    """A noisy account reference in one of the formats customers actually type."""
    digits = "".join(rng.choice("0123456789") for _ in range(6))
    return rng.choice(["acc GW-{}", "account no {}", "ref GWP{}", "a/c {}"]).format(digits)


def _reading(rng: random.Random) -> str:
    """A five-digit meter reading, sometimes with a unit."""
    return f"{rng.randrange(100000):05d}" + rng.choice(["", "", " kWh", "kwh"])


SPECIAL_SLOTS: dict[str, Callable[[random.Random], str]] = {
    "reading": _reading,
    "amount": lambda rng: str(rng.choice([rng.randrange(40, 900), rng.randrange(40, 900) + 0.5])),
}


def _fill(template: str, rng: random.Random, held_out: bool) -> str:
    """Replace every {slot}; held-out slang is only drawn for test messages."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in SPECIAL_SLOTS:
            return SPECIAL_SLOTS[name](rng)
        values = SLOTS[name] + (HELD_OUT_SLOTS.get(name, []) if held_out else [])
        return rng.choice(values)

    return re.sub(r"\{(\w+)\}", value, template)


def _typo(word: str, rng: random.Random) -> str:
    """One keyboard slip: a swapped, dropped or doubled letter."""
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def _roughen(text: str, rng: random.Random) -> str:
    """Make a tidy sentence look typed on a phone: typos, text-speak, sometimes all lower case."""
    texting = rng.random() < 0.3
    words = []
    for word in text.split(" "):
        bare = word.lower().strip(",.?!")
        if texting and bare in ABBREVIATIONS:
            word = word.lower().replace(bare, ABBREVIATIONS[bare])
        elif len(word) > 4 and word.isalpha() and rng.random() < 0.04:
            word = _typo(word, rng)
        words.append(word)
    text = " ".join(words)
    return text.lower() if rng.random() < 0.35 else text


def _distractor(intent: str, rng: random.Random, held_out: bool) -> str:
    """An aside or a negation that borrows another intent's vocabulary."""
    other = rng.choice([label for label in DEMO_LABELS if label != intent])
    pool = NEGATIONS[other] if rng.random() < 0.4 else ASIDES[other]
    return _fill(rng.choice(pool), rng, held_out)


def _message(intent: str, family: Family, rng: random.Random) -> str:
    """One customer message: optional greeting, a distractor, the request itself, noise, sign-off."""
    held_out = family.held_out
    parts = [_fill(rng.choice(family.variants), rng, held_out)]
    for _ in range(2 if rng.random() < 0.35 else 1 if rng.random() < 0.9 else 0):
        distractor = _distractor(intent, rng, held_out)
        at = 0 if distractor.endswith(",") or rng.random() < 0.6 else len(parts)
        parts.insert(at, distractor)
    if rng.random() < 0.15:
        parts.insert(rng.randrange(len(parts) + 1), _account(rng))
    if rng.random() < 0.3:
        parts.insert(0, rng.choice(GREETINGS))
    if rng.random() < 0.25:
        parts.append(rng.choice(SIGN_OFFS))
    return _roughen(" ".join(parts), rng)


def _generate_rows(rng: random.Random, n: int, held_out: bool, seen: set[str]) -> list[dict[str, str]]:
    """n unique rows, intents balanced round-robin, from the train-side or the held-out families.

    `seen` holds every text already generated (any split), so no text appears in two splits.
    Each row carries its family id (`template`) so tests can check that splits share no family.
    """
    rows: list[dict[str, str]] = []
    by_intent = {label: [f for f in FAMILIES if f.intent == label and f.held_out == held_out] for label in DEMO_LABELS}
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > n * 50:
            raise RuntimeError(f"could not generate {n} unique messages; the templates are too few")
        intent = DEMO_LABELS[len(rows) % len(DEMO_LABELS)]
        family = rng.choice(by_intent[intent])
        text = _message(intent, family, rng)
        if text in seen:
            continue
        seen.add(text)
        rows.append({"text": text, "label": intent, "template": f"{intent}/{family.name}"})
    rng.shuffle(rows)
    return rows


def _split_sizes(n_rows: int) -> dict[str, int]:
    """Row counts per split; test takes the remainder so the total is exactly n_rows."""
    n_train = round(n_rows * TRAIN_FRACTION)
    n_validation = round(n_rows * VALIDATION_FRACTION)
    return {"train": n_train, "validation": n_validation, "test": n_rows - n_train - n_validation}


def _generate_splits(seed: int, n_rows: int) -> dict[str, list[dict[str, str]]]:
    """Rows per split, with template ids. Validation uses the training families (different texts): the
    held-out families are kept for test alone so that the final number is the only generalisation measure."""
    if n_rows < 10 * len(DEMO_LABELS):
        raise ValueError(f"n_rows must be at least {10 * len(DEMO_LABELS)} so every split holds every label")
    rng = random.Random(seed)
    sizes = _split_sizes(n_rows)
    seen: set[str] = set()
    return {
        "train": _generate_rows(rng, sizes["train"], held_out=False, seen=seen),
        "validation": _generate_rows(rng, sizes["validation"], held_out=False, seen=seen),
        "test": _generate_rows(rng, sizes["test"], held_out=True, seen=seen),
    }


def generate_demo_dataset(out_dir: Path, seed: int = 13, n_rows: int = 2800) -> dict[str, Path]:
    """Write train.csv, validation.csv and test.csv (columns text,label) and return their paths.

    The same seed always gives byte-identical files, so the demo's numbers are reproducible.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split, rows in _generate_splits(seed, n_rows).items():
        path = out_dir / f"{split}.csv"
        frame = pd.DataFrame(rows, columns=["text", "label"])
        frame.to_csv(path, index=False, encoding="utf-8")
        paths[split] = path
    return paths
