"""Deterministic synthetic page content: articles, other languages, spam, PII, benchmark quotes.

Every function takes a ``random.Random`` so that a page is a pure function of (seed, page index).
The English is template-made but has the statistics real prose has (stop words, sentence length,
punctuation), which is what the downstream heuristics measure. It is long because it is mostly
word lists and sentence templates (data, not logic); splitting them would scatter one generator.
"""

from __future__ import annotations

import random

TOPICS: dict[str, dict[str, list[str]]] = {
    "science": {
        "nouns": [
            "researcher",
            "laboratory",
            "experiment",
            "telescope",
            "cell",
            "protein",
            "climate model",
            "sample",
            "theory",
            "observation",
            "galaxy",
            "enzyme",
            "fossil",
            "measurement",
            "study",
        ],
        "verbs": [
            "measured",
            "observed",
            "confirmed",
            "challenged",
            "described",
            "analysed",
            "predicted",
            "detected",
            "reproduced",
            "published",
        ],
        "adjs": ["surprising", "careful", "early", "independent", "detailed", "unexpected", "long-term", "precise", "preliminary", "rare"],
    },
    "cooking": {
        "nouns": [
            "recipe",
            "dough",
            "sauce",
            "oven",
            "vegetable",
            "spice",
            "kitchen",
            "flavour",
            "broth",
            "pastry",
            "chef",
            "ingredient",
            "harvest",
            "market",
            "loaf",
        ],
        "verbs": ["simmered", "roasted", "seasoned", "folded", "tasted", "prepared", "baked", "served", "combined", "chopped"],
        "adjs": ["fresh", "crisp", "rich", "seasonal", "simple", "golden", "tender", "traditional", "bright", "hearty"],
    },
    "travel": {
        "nouns": [
            "village",
            "harbour",
            "train",
            "mountain",
            "museum",
            "guide",
            "island",
            "coastline",
            "market square",
            "hostel",
            "valley",
            "ferry",
            "trail",
            "cathedral",
            "border",
        ],
        "verbs": [
            "visited",
            "crossed",
            "explored",
            "recommended",
            "reached",
            "photographed",
            "described",
            "followed",
            "discovered",
            "booked",
        ],
        "adjs": ["quiet", "crowded", "remote", "historic", "scenic", "narrow", "famous", "hidden", "coastal", "ancient"],
    },
    "technology": {
        "nouns": [
            "database",
            "compiler",
            "network",
            "processor",
            "server",
            "developer",
            "interface",
            "library",
            "protocol",
            "benchmark",
            "cluster",
            "release",
            "framework",
            "kernel",
            "update",
        ],
        "verbs": ["deployed", "optimised", "released", "tested", "rewrote", "measured", "documented", "migrated", "patched", "profiled"],
        "adjs": [
            "faster",
            "stable",
            "open-source",
            "distributed",
            "experimental",
            "efficient",
            "legacy",
            "secure",
            "modular",
            "lightweight",
        ],
    },
    "sports": {
        "nouns": [
            "team",
            "coach",
            "season",
            "stadium",
            "striker",
            "referee",
            "tournament",
            "league",
            "goalkeeper",
            "supporter",
            "final",
            "match",
            "record",
            "captain",
            "transfer",
        ],
        "verbs": ["defeated", "scored", "trained", "announced", "celebrated", "defended", "qualified", "equalised", "signed", "won"],
        "adjs": ["dramatic", "young", "decisive", "veteran", "unbeaten", "tight", "historic", "injured", "talented", "confident"],
    },
    "finance": {
        "nouns": [
            "market",
            "investor",
            "bank",
            "budget",
            "inflation",
            "loan",
            "pension",
            "company",
            "share price",
            "tax",
            "economist",
            "forecast",
            "quarter",
            "deficit",
            "policy",
        ],
        "verbs": ["reported", "raised", "cut", "warned", "estimated", "invested", "borrowed", "expected", "reduced", "announced"],
        "adjs": ["cautious", "quarterly", "modest", "global", "volatile", "higher", "annual", "steady", "regional", "significant"],
    },
    "health": {
        "nouns": [
            "patient",
            "doctor",
            "clinic",
            "treatment",
            "vaccine",
            "symptom",
            "hospital",
            "nurse",
            "diet",
            "trial",
            "therapy",
            "sleep",
            "exercise",
            "diagnosis",
            "study",
        ],
        "verbs": ["recommended", "treated", "reported", "reduced", "improved", "examined", "prescribed", "monitored", "linked", "tested"],
        "adjs": ["regular", "mild", "chronic", "healthy", "clinical", "common", "effective", "moderate", "daily", "serious"],
    },
}
PLACES = [
    "Lisbon",
    "the northern region",
    "Toronto",
    "a small town",
    "Kyoto",
    "the capital",
    "Nairobi",
    "the coast",
    "Melbourne",
    "the valley",
    "Oslo",
    "the city centre",
]
TIMES = [
    "last week",
    "on Monday",
    "in the spring",
    "earlier this year",
    "over the summer",
    "in 2019",
    "for decades",
    "at the weekend",
    "since March",
    "by the end of the day",
]
NAMES = [
    "Maria Lopez",
    "James Chen",
    "Aisha Bello",
    "Tom Fischer",
    "Lena Novak",
    "David Okafor",
    "Sofia Rossi",
    "Ravi Patel",
    "Emma Larsen",
    "Kenji Sato",
]
CONNECTORS = [
    "However,",
    "Meanwhile,",
    "In addition,",
    "As a result,",
    "For example,",
    "At the same time,",
    "Still,",
    "According to",
    "In the end,",
    "By contrast,",
]

SAID = ["said", "noted", "argued", "explained", "wrote", "told reporters", "pointed out", "suggested"]
SEEMED = ["was", "seemed", "looked", "appeared", "remained", "proved", "became", "felt"]
HOW = ["quickly", "slowly", "carefully", "again", "twice", "quietly", "openly", "finally"]
# Slots every few words: fixed spans stay short, so articles are not flagged for repeated n-grams.
TEMPLATES = [
    "The {adj} {noun} {verb} the {noun2} in {place} {time}.",
    "{name} {said} that the {noun} {seemed} {adj} and that it {verb} the {noun2} {how}.",
    "{conn} the {noun2} {verb} a {adj} {noun} that few had {expected}.",
    "It {seemed} one of the most {adj} cases of a {noun} seen {time}.",
    "When the {noun} {verb} the {noun2}, the result {seemed} {adj} enough to change {plans}.",
    "Readers asked why the {noun} had {verb} the {adj} {noun2} so {how}.",
    "There are {num} reasons to think the {noun} will be {adj} {when}.",
    "{name}, who has studied the {noun} for {num} years, {verb} the {noun2} {time}.",
    "Both the {noun2} and the {noun} {seemed} {adj}, but only one {verb} the {test}.",
    "If your {noun} is {adj}, look at how the {noun2} {verb} it {time}.",
    "That is why many describe the {noun} as {adj}, especially those close to the {noun2}.",
    "She {verb} the {noun} {how} and later wrote about the {adj} {noun2} in a {note}.",
    "Nobody expected the {noun2} to be so {adj} {time}, {name} {said}.",
    "{conn} a {adj} {noun} in {place} {verb} {num} {noun2}s {time}.",
    "According to {name}, the {noun} {verb} more than {num} of them {when}.",
    "Why would a {adj} {noun} matter? Because the {noun2} {verb} it {how}.",
    "Local officials {said} the {noun2} {seemed} {adj} after it {verb} the {noun} {time}.",
    "For {num} weeks the {noun} {seemed} {adj}; then the {noun2} {verb} everything.",
    "Some argue that the {noun2} is too {adj}, yet the {noun} {verb} it {how}.",
    "What {seemed} {adj} {time} now looks like a {adj2} {noun}, {name} {said}.",
    "Few people in {place} knew the {noun} had {verb} a {adj} {noun2}.",
    "Our team {verb} the {noun} {how}, and the {noun2} {seemed} {adj} as a result.",
    "In short, the {noun} {verb} the {noun2} and {plans} changed {how}.",
    "Critics {said} the {adj} {noun2} {verb} the wrong {noun} {time}.",
]
EXPECTED = ["expected", "predicted", "imagined", "planned for", "noticed", "seen coming"]
PLANS = ["the plan", "their plans", "the schedule", "the budget", "the outlook", "the debate"]
WHEN = ["this year", "next season", "by spring", "in the long run", "soon", "before long"]
TESTS = ["test", "review", "inspection", "trial", "audit", "check"]
NOTES = ["short note", "long letter", "blog post", "report", "column", "newsletter"]

FOREIGN = {
    "de": [
        "Die Stadt hat im letzten Jahr ein neues Museum eröffnet, das viele Besucher anzieht.",
        "Nach Angaben der Behörden wurde die Straße wegen der Bauarbeiten für zwei Wochen gesperrt.",
        "Der Verein plant, im Herbst ein großes Fest für alle Familien aus der Gegend zu veranstalten.",
        "Viele Menschen fahren am Wochenende mit dem Fahrrad an den See, um sich zu erholen.",
        "Die Forscher haben gezeigt, dass sich das Klima in den Bergen schneller verändert als erwartet.",
        "Im Rathaus wurde über den neuen Haushalt und die Kosten für die Schulen diskutiert.",
        "Das Restaurant in der Altstadt ist für seine Suppen und seinen hausgemachten Kuchen bekannt.",
    ],
    "fr": [
        "La ville a inauguré un nouveau marché couvert qui attire chaque samedi de nombreux visiteurs.",
        "Selon les chercheurs, les glaciers des Alpes ont perdu une grande partie de leur volume.",
        "Le musée propose cet été une exposition consacrée aux peintres de la région.",
        "Les habitants du quartier se sont réunis pour discuter de la rénovation de la place.",
        "Le train de nuit entre Paris et Nice a de nouveau été mis en service après plusieurs années.",
        "Il est conseillé de réserver sa table à l'avance, car le restaurant est souvent complet.",
        "Les élèves ont présenté leurs projets devant les parents à la fin de l'année scolaire.",
    ],
    "es": [
        "El ayuntamiento ha anunciado la apertura de una nueva biblioteca en el centro de la ciudad.",
        "Según los expertos, la temporada de lluvias llegará antes de lo previsto este año.",
        "Los vecinos del barrio organizaron una fiesta para celebrar el aniversario de la plaza.",
        "El equipo local ganó el partido gracias a un gol en los últimos minutos del encuentro.",
        "Muchos turistas visitan el mercado para probar los productos frescos de la región.",
        "La universidad ha publicado un estudio sobre el uso del agua en la agricultura.",
        "El museo de arte moderno amplía su horario durante los meses de verano.",
    ],
}

SPAM_WORDS = [
    "cheap",
    "best price",
    "buy now",
    "casino",
    "free bonus",
    "replica watches",
    "loans",
    "viagra",
    "discount",
    "click here",
    "limited offer",
    "win big",
]


def article(rng: random.Random, topic: str | None = None) -> tuple[str, list[str]]:
    """A headline and 4–9 paragraphs of English prose on one topic."""
    topic = topic or rng.choice(sorted(TOPICS))
    vocab = TOPICS[topic]

    order: list[str] = []

    def sentence() -> str:
        if not order:  # each template once before any repeats
            order.extend(rng.sample(TEMPLATES, len(TEMPLATES)))
        t = order.pop()
        s = t.format(
            adj=rng.choice(vocab["adjs"]),
            adj2=rng.choice(vocab["adjs"]),
            noun=rng.choice(vocab["nouns"]),
            noun2=rng.choice(vocab["nouns"]),
            verb=rng.choice(vocab["verbs"]),
            place=rng.choice(PLACES),
            time=rng.choice(TIMES),
            name=rng.choice(NAMES),
            conn=rng.choice(CONNECTORS),
            num=rng.randint(2, 40),
            said=rng.choice(SAID),
            seemed=rng.choice(SEEMED),
            how=rng.choice(HOW),
            expected=rng.choice(EXPECTED),
            plans=rng.choice(PLANS),
            when=rng.choice(WHEN),
            test=rng.choice(TESTS),
            note=rng.choice(NOTES),
        )
        return s[0].upper() + s[1:]

    paragraphs = [" ".join(sentence() for _ in range(rng.randint(3, 5))) for _ in range(rng.randint(3, 6))]
    noun = rng.choice(vocab["nouns"])
    title = f"How a {rng.choice(vocab['adjs'])} {noun} {rng.choice(vocab['verbs'])} the {rng.choice(vocab['nouns'])}"
    return title, paragraphs


def foreign(rng: random.Random, lang: str) -> tuple[str, list[str]]:
    pool = FOREIGN[lang]
    paragraphs = [" ".join(rng.sample(pool, k=rng.randint(3, 5))) for _ in range(rng.randint(3, 6))]
    return pool[0].split(",")[0], paragraphs


def spam(rng: random.Random) -> tuple[str, list[str]]:
    """Keyword stuffing: few stop words, heavy repetition, shouting."""
    words = [rng.choice(SPAM_WORDS) for _ in range(rng.randint(80, 200))]
    lines = [" ".join(words[i : i + 8]).upper() + " !!!" for i in range(0, len(words), 8)]
    return "BEST " + rng.choice(SPAM_WORDS).upper() + " ONLINE", lines


def short(rng: random.Random) -> tuple[str, list[str]]:
    return "Coming soon", [rng.choice(["Page under construction.", "Login required.", "Thanks for visiting!", "Subscribe."])]


def near_duplicate(rng: random.Random, paragraphs: list[str], edit_rate: float) -> list[str]:
    """An edited copy: each word replaced or dropped with probability ``edit_rate``."""
    out = []
    fillers = ["really", "also", "indeed", "quite", "then", "now", "still", "perhaps"]
    for p in paragraphs:
        words = []
        for w in p.split():
            r = rng.random()
            if r < edit_rate / 2:
                continue
            words.append(rng.choice(fillers) if r < edit_rate else w)
        out.append(" ".join(words))
    return out


def pii_sentences(rng: random.Random) -> tuple[list[str], dict[str, list[str]]]:
    """Sentences carrying an email, a phone number and an IP address, and what was planted."""
    user = rng.choice(["info", "jane.doe", "contact", "m.rossi", "support", "press"])
    domain = rng.choice(["example.org", "mail-host.net", "city-news.com", "research.edu"])
    email = f"{user}{rng.randint(1, 99)}@{domain}"
    phone = f"+1 ({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
    ip4 = ".".join(str(rng.randint(1, 254)) for _ in range(4))
    ip6 = ":".join(f"{rng.randint(0, 65535):x}" for _ in range(8))
    sents = [
        f"For questions about this story, write to {email} or call {phone} during office hours.",
        f"The server at {ip4} logged the request, and the backup at {ip6} kept a copy of it.",
    ]
    return sents, {"email": [email], "phone": [phone], "ipv4": [ip4], "ipv6": [ip6]}


def benchmark_quote(rng: random.Random) -> tuple[list[str], list[str]]:
    """Benchmark-style items (grade-school maths, multiple choice) as a page would quote them."""
    a, b, c = rng.randint(3, 40), rng.randint(2, 12), rng.randint(2, 9)
    item = rng.choice(["apples", "pencils", "tickets", "marbles", "cupcakes"])
    name = rng.choice(["Natalia", "Weng", "Betty", "Julie", "James", "Albert"])
    q1 = (
        f"{name} had {a} {item}. She bought {b} more packs with {c} {item} in each pack and then gave away half of "
        f"all her {item} to a friend. How many {item} does {name} have now?"
    )
    q2 = (
        "Which of the following best describes the function of the mitochondria in a eukaryotic cell? "
        "A. protein synthesis B. energy production C. lipid storage D. cell division"
    )
    return [f"Practice question: {q1}", f"Quiz: {q2}"], [q1, q2]


REFERENCE_TEMPLATES = [
    "A {noun} is best understood by looking at how it {verb} a {noun2} under controlled conditions.",
    "In {field}, the term {noun} refers to a {adj} arrangement that {verb} the {noun2} in a predictable way.",
    "The first step is to measure the {noun2} carefully, because every later estimate depends on it.",
    "There are three common approaches: the {adj} method, the {adj2} method, and a combination of the two.",
    "Each approach has a cost; the {adj} method is simpler, while the {adj2} method handles more cases.",
    "To see why, consider a {noun} that {verb} a {noun2} twice: the second result depends on the first.",
    "This explains a pattern that students of {field} often find surprising at first.",
    "A worked example makes the idea concrete: start with {num} samples and record how each {noun} behaves.",
    "The result can be summarised in one sentence: a {adj} {noun} tends to produce a {adj2} {noun2}.",
    "Historians of {field} trace the idea to careful observation rather than to a single discovery.",
    "In practice, the main sources of error are poor measurement and an unclear definition of the {noun2}.",
    "The key terms are defined in the glossary, and the exercises at the end test each of them.",
]
FIELDS = ["chemistry", "ecology", "statistics", "geography", "economics", "biology", "linguistics", "physics"]


def reference(rng: random.Random, topic: str | None = None) -> str:
    """Clean, explanatory (textbook-like) prose: the kind of text a quality classifier is trained
    to prefer over ordinary crawl pages."""
    topic = topic or rng.choice(sorted(TOPICS))
    vocab = TOPICS[topic]
    field = rng.choice(FIELDS)
    paras = []
    for _ in range(rng.randint(3, 5)):
        sents = []
        for t in rng.sample(REFERENCE_TEMPLATES, rng.randint(4, 6)):
            s = t.format(
                noun=rng.choice(vocab["nouns"]),
                noun2=rng.choice(vocab["nouns"]),
                verb=rng.choice(vocab["verbs"]),
                adj=rng.choice(vocab["adjs"]),
                adj2=rng.choice(vocab["adjs"]),
                field=field,
                num=rng.randint(5, 200),
            )
            sents.append(s[0].upper() + s[1:])
        paras.append(" ".join(sents))
    return f"An introduction to the {rng.choice(vocab['nouns'])} in {field}\n" + "\n".join(paras)
