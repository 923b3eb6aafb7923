"""The toy sentiment grammar of the direction cases: templated reviews with distractor features.

A review fills one of four 13-word templates (all the same length, so the answer is read at a fixed
final position) with a topic, an intensity adverb, an adjective and a neutral verb::

    the film was very superb , i watched it . overall it is      -> good
    i read the novel , it felt somewhat dreadful . verdict it is  -> bad

The label is the adjective's polarity and nothing else. The other slots are *distractors*:

- ``intensity``: the adverb is strong (very, really, ...) for 80% of positive and 20% of negative
  reviews, weak (somewhat, fairly, ...) otherwise: correlated with the label, causally irrelevant;
- ``template``: templates 0 and 1 carry 75% of the positive reviews, 2 and 3 75% of the negative ones;
- ``topic``: one of 40 topics, independent of the label, given a large spread at the patched site
  (so that the top principal component is the topic, not sentiment);
- ``verb``: a neutral verb, independent of everything.

Datasets are seeded; ``split="test"`` never contains a review that ``split="train"`` (for the same
seed) contains: a stable hash of the text holds one review in five out for test. ``split="fit"`` is
what direction methods are fitted on (drawn like train, with another seed).
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field

import torch

from cases.tokenizer import WordTokenizer

POSITIVE = (
    "good", "great", "superb", "wonderful", "brilliant", "excellent", "lovely", "charming", "delightful",
    "fantastic", "splendid", "terrific", "marvelous", "fabulous", "gorgeous", "stunning", "moving",
    "clever", "fresh", "elegant", "joyful", "pleasant", "perfect", "beautiful", "amazing", "enjoyable",
    "uplifting", "witty", "magical", "masterful",
)
NEGATIVE = (
    "bad", "awful", "terrible", "dreadful", "horrible", "boring", "dull", "tedious", "clumsy", "lousy",
    "poor", "weak", "bland", "messy", "painful", "stupid", "ugly", "annoying", "pointless", "shallow",
    "stale", "sloppy", "tiresome", "dismal", "wretched", "mediocre", "lifeless", "clunky", "forgettable",
    "disappointing",
)
STRONG = ("very", "really", "extremely", "truly", "so")
WEAK = ("somewhat", "fairly", "slightly", "rather", "kinda")
TOPICS = (
    "movie", "film", "show", "book", "novel", "album", "song", "game", "play", "opera", "musical", "series",
    "episode", "sequel", "remake", "documentary", "cartoon", "comic", "poem", "story", "concert", "ballet",
    "podcast", "trailer", "soundtrack", "painting", "exhibit", "festival", "restaurant", "meal", "hotel",
    "trip", "phone", "laptop", "camera", "car", "bike", "course", "lecture", "app",
)
VERBS = ("watched", "saw", "read", "tried", "played", "heard", "rated", "reviewed")
ANSWERS = ("good", "bad")  # answer tokens: label 1 (positive) -> "good", label 0 (negative) -> "bad"
# Note: "good" and "bad" are also adjectives; as answers they are predicted, never read.

TEMPLATES = (
    "the {topic} was {adv} {adj} , i {verb} it . overall it is",
    "this {topic} is {adv} {adj} and we {verb} it . so it is",
    "i {verb} the {topic} , it felt {adv} {adj} . verdict it is",
    "a {adv} {adj} {topic} that i {verb} today . in short it is",
)
POSITIVE_TEMPLATES = (0, 1)  # these carry `template_corr` of the positive reviews
SEQ_LEN = 14  # BOS + 13 words
FINAL_POS = SEQ_LEN - 1


def _template_words() -> list[str]:
    out = []
    for t in TEMPLATES:
        out += [w for w in t.split() if not w.startswith("{")]
    return out


def build_tokenizer() -> WordTokenizer:
    words = _template_words() + list(ANSWERS) + list(POSITIVE) + list(NEGATIVE) + list(STRONG) + list(WEAK) \
        + list(TOPICS) + list(VERBS)
    return WordTokenizer(words)


@dataclass(frozen=True)
class Review:
    """One review and its latent variables (label 1 = positive)."""

    label: int
    adj: str
    adv: str
    strong: int
    template: int
    topic: str
    verb: str

    @property
    def text(self) -> str:
        return TEMPLATES[self.template].format(topic=self.topic, adv=self.adv, adj=self.adj, verb=self.verb)


@dataclass
class SentimentData:
    """Token ids and latent variables of a batch of reviews."""

    tokens: torch.Tensor  # (n, SEQ_LEN) long
    labels: torch.Tensor  # (n,) long, 1 = positive
    strong: torch.Tensor  # (n,) long, 1 = strong adverb
    template: torch.Tensor  # (n,) long, template id
    topic: torch.Tensor  # (n,) long, topic index
    reviews: list[Review] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx) -> "SentimentData":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return SentimentData(self.tokens[idx], self.labels[idx], self.strong[idx], self.template[idx], self.topic[idx],
                             [self.reviews[int(i)] for i in idx])


@dataclass
class SentimentGrammar:
    """The review generator. ``intensity_corr``/``template_corr``: P(distractor agrees with the label)."""

    intensity_corr: float = 0.8
    template_corr: float = 0.75

    def sample(self, rng: random.Random) -> Review:
        label = rng.randrange(2)
        adj = rng.choice(POSITIVE if label else NEGATIVE)
        strong = int(rng.random() < (self.intensity_corr if label else 1 - self.intensity_corr))
        adv = rng.choice(STRONG if strong else WEAK)
        pos_group = rng.random() < (self.template_corr if label else 1 - self.template_corr)
        others = [t for t in range(len(TEMPLATES)) if t not in POSITIVE_TEMPLATES]
        template = rng.choice(POSITIVE_TEMPLATES if pos_group else others)
        return Review(label, adj, adv, strong, template, rng.choice(TOPICS), rng.choice(VERBS))



# split -> seed offset. Reviews are assigned to the held-out bucket by a stable hash of their text:
# ``test`` draws only from it, ``train`` and ``fit`` never do, so test is disjoint whatever the sizes.
_SPLIT_SEED = {"train": 0, "fit": 1_000_003, "test": 2_000_003}
TEST_BUCKETS = 5  # one review text in 5 is held out for test


def is_test_text(text: str) -> bool:
    return zlib.crc32(text.encode()) % TEST_BUCKETS == 0


def make_data(reviews: list[Review], tokenizer: WordTokenizer) -> SentimentData:
    tokens = tokenizer.encode_batch([r.text for r in reviews])
    if tokens.shape[1] != SEQ_LEN:
        raise AssertionError(f"templates must be {SEQ_LEN} tokens long, got {tokens.shape[1]}")
    return SentimentData(
        tokens=tokens,
        labels=torch.tensor([r.label for r in reviews], dtype=torch.long),
        strong=torch.tensor([r.strong for r in reviews], dtype=torch.long),
        template=torch.tensor([r.template for r in reviews], dtype=torch.long),
        topic=torch.tensor([TOPICS.index(r.topic) for r in reviews], dtype=torch.long),
        reviews=reviews,
    )


def sentiment_dataset(split: str, n: int, seed: int = 0, *, tokenizer: WordTokenizer | None = None,
                      grammar: SentimentGrammar | None = None) -> SentimentData:
    """``n`` seeded reviews of ``split`` (train, fit or test); test texts never occur in train or fit."""
    if split not in _SPLIT_SEED:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(_SPLIT_SEED)}")
    grammar = grammar or SentimentGrammar()
    rng = random.Random(seed + _SPLIT_SEED[split])
    want_test = split == "test"
    out: list[Review] = []
    tries = 0
    while len(out) < n:
        r = grammar.sample(rng)
        tries += 1
        if tries > 100 * (n + 100):
            raise RuntimeError(f"could not sample {n} {split} reviews")
        if is_test_text(r.text) == want_test:
            out.append(r)
    return make_data(out, tokenizer or build_tokenizer())


def opposite_pairs(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """For each example, the index of a seeded random example with the opposite label: (n,) long."""
    g = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    out = torch.empty(n, dtype=torch.long)
    for lab in (0, 1):
        src = torch.nonzero(labels == lab).flatten()
        dst = torch.nonzero(labels != lab).flatten()
        if len(src) and not len(dst):
            raise ValueError("both labels are needed to build counterfactual pairs")
        if len(src):
            out[src] = dst[torch.randint(len(dst), (len(src),), generator=g)]
    return out
