import torch

from lmforge.engine.kv import BatchKV, PrefixCache

HEADS, DIM = 2, 3


def row(length: int, tag: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One layer's keys and values for a prefilled row, every entry identifying (row, position)."""
    keys = torch.full((1, HEADS, length, DIM), tag) + torch.arange(length).view(1, 1, length, 1) / 100
    return [(keys, -keys)]


def decode_step(batch: BatchKV, tags: list[float]) -> None:
    mask, positions = batch.step_inputs()
    layer = batch.cache.layers[0]
    new = torch.tensor(tags).view(-1, 1, 1, 1).expand(-1, HEADS, 1, DIM) + positions.view(-1, 1, 1, 1) / 100
    keys, values = layer.update(new, -new)
    assert keys.shape[2] == mask.shape[1] == layer.get_seq_length() + 1
    batch.advance()


def expected(tag: float, length: int) -> torch.Tensor:
    return torch.full((1, HEADS, length, DIM), tag) + torch.arange(length).view(1, 1, length, 1) / 100


def test_rows_keep_their_tokens_through_joins_leaves_and_window_moves(monkeypatch):
    monkeypatch.setattr(BatchKV, "FIRST_SLOTS", 1)  # every join past the first grows the slots
    batch = BatchKV(max_rows=4, first_row=row(3, 1.0))
    lengths = {}
    for tag, length in ((1.0, 3), (2.0, 7), (3.0, 2)):  # a longer row moves the window right
        batch.join(row(length, tag))
        lengths[tag] = length
    order = [1.0, 2.0, 3.0]
    for step in range(300):  # past the first capacity: the window slides back and the slots grow
        decode_step(batch, order)
        for tag in order:
            lengths[tag] += 1
        if step == 5:
            batch.leave(0)  # the last row takes slot 0
            order[0] = order.pop()
            del lengths[1.0]
        if step == 9:
            batch.join(row(4, 4.0))
            order.append(4.0)
            lengths[4.0] = 4
    for index, tag in enumerate(order):
        keys, values = batch.row(index, lengths[tag])[0]
        assert torch.equal(keys, expected(tag, lengths[tag])) and torch.equal(values, -keys)
    mask, positions = batch.step_inputs()
    assert positions.flatten().tolist() == [lengths[tag] for tag in order]
    assert batch.start == min(batch.end - lengths[tag] for tag in order)  # no all-padding columns on the left


def test_a_wide_step_keeps_each_rows_confirmed_columns_only():
    """A drafted step writes three columns per row; row 0 keeps one, row 1 all three. Later positions count only
    kept tokens, and a row copied out skips the rejected columns."""
    batch = BatchKV(max_rows=2, first_row=row(2, 1.0))
    batch.join(row(2, 1.0))
    batch.join(row(4, 2.0))
    mask, positions = batch.step_inputs(3)
    assert positions.tolist() == [[2, 3, 4], [4, 5, 6]] and mask.shape == (2, 7)
    new = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1).expand(-1, HEADS, 3, DIM) + positions.view(2, 1, 3, 1) / 100
    batch.cache.layers[0].update(new, -new)
    batch.advance(3, torch.tensor([1, 3]))
    _, positions = batch.step_inputs()
    assert positions.flatten().tolist() == [3, 7]
    assert torch.equal(batch.row(0, 3)[0][0], expected(1.0, 3))
    assert torch.equal(batch.row(1, 7)[0][0], expected(2.0, 7))


def test_rows_are_packed_once_rejected_columns_fill_half_the_window(monkeypatch):
    monkeypatch.setattr(BatchKV, "SLACK", 0)
    batch = BatchKV(max_rows=2, first_row=row(3, 1.0))
    batch.join(row(3, 1.0))
    batch.join(row(2, 2.0))
    lengths = {1.0: 3, 2.0: 2}
    for step in range(6):  # each row keeps one column of four: row 0's draft was wrong, row 1 drafted one token
        fed = torch.tensor([4, 2])
        mask, positions = batch.step_inputs(4, fed)
        assert positions[1].tolist() == [lengths[2.0], lengths[2.0] + 1, lengths[2.0] + 1, lengths[2.0] + 1]
        new = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1).expand(-1, HEADS, 4, DIM) + positions.view(2, 1, 4, 1) / 100
        batch.cache.layers[0].update(new, -new)
        batch.advance(4, torch.tensor([1, 1]))
        lengths[1.0] += 1
        lengths[2.0] += 1
    assert batch.end - batch.start < 4 * 6  # packed at least once
    for index, tag in enumerate((1.0, 2.0)):
        keys, values = batch.row(index, lengths[tag])[0]
        assert torch.equal(keys, expected(tag, lengths[tag])) and torch.equal(values, -keys)
    _, positions = batch.step_inputs()
    assert positions.flatten().tolist() == [lengths[1.0], lengths[2.0]]


def test_prefix_cache_gives_the_longest_shared_prefix_and_evicts_least_recent():
    cache = PrefixCache(budget=60)
    kv = lambda n: [(torch.arange(n).view(1, 1, n, 1).float(), torch.zeros(1, 1, n, 1))]  # noqa: E731
    first, second = list(range(30)), list(range(20)) + [99] * 10
    cache.store(None, first, kv(30))
    cache.store(None, second, kv(30))
    hit, layers = cache.lookup(None, list(range(25)) + [7, 7])
    assert hit == 25 and layers[0][0].flatten().tolist() == list(range(25))
    assert cache.lookup("adapter", first + [1]) == (0, None)  # other weights, other keys
    assert cache.lookup(None, first)[0] == 29  # the last prompt token is always computed
    assert cache.lookup(None, [5] * 40) == (0, None)
    cache.store(None, [8] * 20, kv(20))  # over budget: the least recently used entry (second) goes
    held = [list(tokens) for _, tokens in cache.entries]
    assert held == [first, [8] * 20] and cache.held == 50
