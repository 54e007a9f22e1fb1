from lmforge.engine.lookup import Drafter, DraftGate, NgramIndex


def test_draft_copies_what_followed_the_latest_occurrence_of_the_longest_tail():
    tokens = [1, 2, 9, 5, 1, 2, 3, 4, 8, 2, 3]
    index = NgramIndex(tokens)
    assert index.draft(2) == [4, 8]  # tail [2, 3] last occurred at positions 5-6
    tokens += [7]
    assert index.draft(3) == []  # 7 never occurred before
    tokens += [1, 2]
    assert index.draft(1) == [3]  # [7, 1, 2] is new, [1, 2] last ended at position 5


def test_draft_goes_on_over_its_own_copy_in_a_loop():
    tokens = [4, 5, 6, 5, 6]
    assert NgramIndex(tokens).draft(5) == [5, 6, 5, 6, 5]
    assert NgramIndex([3, 3]).draft(3) == [3, 3, 3]
    assert NgramIndex([3]).draft(3) == [] and NgramIndex([1, 2, 3]).draft(0) == []


def test_drafts_wait_longer_after_each_outright_miss():
    drafter = Drafter([1, 2, 1, 2])
    assert drafter.draft(2) == [1, 2]
    waits = []
    for _ in range(5):
        drafter.confirmed(0)
        waits.append(drafter.waiting)
        while drafter.waiting:
            assert drafter.draft(2) == []
    assert waits == [1, 3, 7, 15, 15]
    drafter.confirmed(1)
    assert drafter.draft(2) == [1, 2]


def test_gate_takes_the_faster_kind_of_step_and_retries_drafts_ever_later_while_they_lose():
    gate = DraftGate()
    assert gate.open()  # nothing measured: draft first, then a plain step
    gate.record(True, seconds=0.3, tokens=10)
    assert not gate.open()
    gate.record(False, seconds=0.1, tokens=10)  # plain steps are 3x faster per token
    for wait in (DraftGate.EXPLORE, 2 * DraftGate.EXPLORE):
        opened = [gate.open() for _ in range(wait)]
        assert opened == [False] * (wait - 1) + [True]
        gate.record(True, seconds=0.3, tokens=10)
    for _ in range(20):
        gate.record(True, seconds=0.01, tokens=10)  # drafts turned faster
    assert gate.open() and gate.explore == DraftGate.EXPLORE
