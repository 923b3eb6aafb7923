"""Small RASP programs in the style of tracr's library: the tracr bridge's examples (exact-conversion
tests in tests/cases/test_tracr_bridge.py, compile timings in benchmarks/tracr_compile.py). Not cases:
:data:`CASES` maps a name to ``(builder, vocab, max_seq_len, causal)``.
"""

from __future__ import annotations

from cases.tracr import rasp


def make_length():
    return rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
                              .named("all_true_selector")).named("length")


def make_reverse():
    opp_idx = (make_length() - rasp.indices).named("opp_idx")
    opp_idx = (opp_idx - 1).named("opp_idx-1")
    flip = rasp.Select(rasp.indices, opp_idx, rasp.Comparison.EQ).named("reverse_selector")
    return rasp.Aggregate(flip, rasp.tokens).named("reverse")


def make_frac_prevs():
    bools = rasp.numerical(rasp.Map(lambda x: 1 if x == "a" else 0, rasp.tokens).named("is_a"))
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    return rasp.numerical(rasp.Aggregate(prevs, bools, default=0)).named("frac_prevs")


def make_sort_unique():
    smaller = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT).named("smaller")
    target_pos = rasp.SelectorWidth(smaller).named("target_pos")
    sel_new = rasp.Select(target_pos, rasp.indices, rasp.Comparison.EQ)
    return rasp.Aggregate(sel_new, rasp.tokens).named("sort")


def make_hist():
    return rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
                              .named("same_tok")).named("hist")


def make_num_map():  # categorical -> numerical Map
    return rasp.numerical(rasp.Map(lambda x: 0.5 * x + 1, rasp.tokens)).named("half_plus_one")


def make_frac_threshold(threshold=0):  # numerical -> categorical Map on a numerical Aggregate
    return rasp.Map(lambda x: x > threshold, make_frac_prevs()).named("any_a")


def make_seq_map():
    return rasp.SequenceMap(lambda t, i: (t + i) % 3, rasp.tokens, rasp.indices).named("shifted_sum")


def make_count_prefix():  # SelectorWidth keyed on indices: how many of the first three positions exist
    return rasp.SelectorWidth(rasp.Select(rasp.indices, rasp.tokens, lambda k, q: k <= 2)).named("n_first3")


def make_shift():
    sel = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1).named("shift_sel")
    return rasp.Aggregate(sel, rasp.tokens, default=None).named("shift_by_1")


# id -> (builder, vocab, max_seq_len, causal)
CASES = {
    "length": (make_length, {"a", "b", "c"}, 5, False),
    "reverse": (make_reverse, {"a", "b", "c"}, 5, False),
    "reverse_int": (make_reverse, {1, 2, 3}, 4, False),
    "frac_prevs": (make_frac_prevs, {"a", "b", "c"}, 5, False),
    "frac_prevs_causal": (make_frac_prevs, {"a", "b", "c"}, 5, True),
    "sort_unique": (make_sort_unique, {1, 2, 3, 4}, 4, False),
    "hist": (make_hist, {"a", "b", "c", "d"}, 4, False),
    "num_map": (make_num_map, {0, 1, 2, 3}, 4, False),
    "num_map_causal": (make_num_map, {0, 1, 2, 3}, 4, True),
    "frac_threshold": (make_frac_threshold, {"a", "b"}, 5, True),
    "seq_map": (make_seq_map, {0, 1, 2}, 4, False),
    "seq_map_causal": (make_seq_map, {0, 1, 2}, 4, True),
    "count_prefix": (make_count_prefix, {"x", "y"}, 5, False),
    "shift": (make_shift, {"a", "b", "c"}, 4, True),
}
