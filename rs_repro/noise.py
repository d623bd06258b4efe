"""Where the noise of a vote comes from: one shared generator, or one stream per image.

A vote of g_{sigma,n} (ICASSP 2022, section 3.1) needs n noise vectors and, for its tie rule, one uniform
number (:func:`rs_repro.smoothing.top_class`). :meth:`rs_repro.smoothing.Smooth.decide` draws them from a
*noise source*, row by row, in rounds (a curtailed vote draws only as many vectors as its outcome needs):

* :class:`SharedNoise`: every row draws from one :class:`torch.Generator`. The law of each vote is that of n
  independent draws; which numbers a row gets depends on the other rows of the call.
* :class:`GroupedNoise`: the rows of group ``g`` draw from ``g``'s generator exactly as a :class:`SharedNoise` of
  that group's rows alone would, so that several groups' votes share one call (and its forward passes).
* :class:`RowNoise`: every row draws from its own generator (a defence that seeds a query's noise by the query
  itself), its n vectors at once, so that a row's answer depends on its generator alone.
* :class:`ImageStreams`: the rows of image ``b`` draw from that image's own two streams (noise vectors and
  tie-breaking uniforms), seeded by a seed and the image's key (its test-split index). A row of image ``b``
  takes the next vectors of ``b``'s stream, rows of one image in their order, so what an image's queries
  are answered does not depend on which other images share the batch: an attack run on a batch answers
  each image as a run on that image alone would (the contract of ``tests/test_attack_contract.py``).

Streams are filled block by block, one generator call per block, the block sizes a fixed schedule
(:func:`block_vectors`: small first, so that a short attack draws little it never reads, then growing), so
an image's stream is the same sequence of numbers however the calls that read it are cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from rs_repro import checks, seeds

__all__ = ["BLOCK_NUMBERS", "FIRST_BLOCK_NUMBERS", "Fill", "GroupedNoise", "ImageStreams", "RowNoise", "SharedNoise",
           "block_vectors"]

#: How a source fills a tensor of noise vectors [k, e] in place from a generator, in the smoothed classifier's
#: law (:meth:`rs_repro.smoothing.Smooth.fill_noise`).
Fill = Callable[[torch.Tensor, torch.Generator], None]

#: The numbers of an image stream's first block (a block is a whole number of vectors, at least one).
FIRST_BLOCK_NUMBERS = 1 << 10
#: Numbers in the largest blocks of an image stream (each block doubles the last, up to this size).
BLOCK_NUMBERS = 1 << 16
#: A block index at or past which every block schedule here has reached its largest block.
_LAST_GROWTH = 40
#: The uniform numbers an image's tie stream draws per generator call.
_TIE_BLOCK = 256


def block_vectors(size: int, index: int) -> int:
    """Vectors of ``size`` numbers in block ``index`` (0, 1, ...) of an image stream: at least
    min(:data:`FIRST_BLOCK_NUMBERS` 2^index, :data:`BLOCK_NUMBERS`) numbers."""
    return max(1, math.ceil(min(FIRST_BLOCK_NUMBERS << min(index, _LAST_GROWTH), BLOCK_NUMBERS) / size))


class SharedNoise:
    """Every row's noise from one generator, drawn a round at a time (rows in order).

    Parameters
    ----------
    generator : torch.Generator
        Source of every noise vector and tie-breaking number, on the device of the inputs.
    """

    def __init__(self, generator: torch.Generator) -> None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self._buffer: torch.Tensor | None = None

    def vectors(self, rows: np.ndarray, draws: np.ndarray, size: int, like: torch.Tensor, fill: Fill) -> torch.Tensor:
        """``draws[i]`` noise vectors for each row ``rows[i]``, consecutive, rows in order: [draws.sum(), size]."""
        total = int(draws.sum())
        if (self._buffer is None or self._buffer.shape[0] < total or self._buffer.shape[1] != size
                or self._buffer.dtype != like.dtype or self._buffer.device != like.device):
            self._buffer = torch.empty((total, size), dtype=like.dtype, device=like.device)
        out = self._buffer[:total]
        fill(out, self.generator)
        return out

    def uniforms(self, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        """One tie-breaking number in [0, 1) per row, float64 [len(rows)]."""
        return torch.rand(len(rows), generator=self.generator, device=device, dtype=torch.float64)


class GroupedNoise:
    """The rows of several groups in one call, group g's rows drawing from g's generator as a
    :class:`SharedNoise` of g's rows alone would.

    A call of :meth:`rs_repro.smoothing.Smooth.decide` with ``streams`` giving each row's group (non-decreasing:
    a group's rows consecutive) then answers every group as separate calls with a :class:`SharedNoise` each
    would, on the same numbers, provided no forward group of the call cuts a round of a group's rows (a round of
    at most ``batch_size`` copies in all).

    Parameters
    ----------
    generators : sequence of torch.Generator
        One per group, on the device of the inputs.
    """

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = _generators(generators, "group")

    def _runs(self, groups: np.ndarray, counts: np.ndarray) -> list[tuple[int, int, int]]:
        """(group, first, stop) of each run of equal ``groups`` in the cumulative ``counts``."""
        if len(groups) > 1 and (np.diff(groups) < 0).any():
            raise ValueError(f"a group's rows must be consecutive, got groups {groups}")
        ends = np.cumsum(counts)
        cut = np.flatnonzero(np.diff(groups)) + 1
        starts = np.concatenate(([0], cut))
        stops = np.concatenate((cut, [len(groups)]))
        return [(int(groups[a]), int(ends[a] - counts[a]), int(ends[b - 1])) for a, b in zip(starts, stops, strict=True)]

    def vectors(self, rows: np.ndarray, draws: np.ndarray, size: int, like: torch.Tensor, fill: Fill) -> torch.Tensor:
        """``draws[i]`` noise vectors for each row of group ``rows[i]``, consecutive, rows in order:
        [draws.sum(), size]; each group's from its generator in one ``fill`` call."""
        out = torch.empty((int(draws.sum()), size), dtype=like.dtype, device=like.device)
        if len(rows):
            for group, first, stop in self._runs(rows, draws):
                fill(out[first:stop], self.generators[group])
        return out

    def uniforms(self, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        """One tie-breaking number in [0, 1) per row of group ``rows[i]``, float64, each group's from its
        generator in one call."""
        if not len(rows):
            return torch.empty(0, dtype=torch.float64, device=device)
        return torch.cat([torch.rand(stop - first, generator=self.generators[group], dtype=torch.float64,
                                     device=self.generators[group].device)
                          for group, first, stop in self._runs(rows, np.ones(len(rows), dtype=np.int64))]).to(device)


class RowNoise:
    """Every row's noise vectors and tie-breaking number from the row's own generator.

    Row i's ``n`` vectors are drawn by one ``fill`` call on its generator when the first row reads, then read
    in order, and its tie-breaking number comes after them. What a row reads thus depends on its generator
    alone, not on how a vote's rounds and forward groups are cut nor on the other rows of the call: with each
    generator seeded by the row's bytes (``noise="input-hash"`` of :func:`rs_repro.attacks.oracle.smoothed_oracle`),
    the same input always gets the same vote, and rows of a call are answered in one batch.

    Parameters
    ----------
    generators : sequence of torch.Generator
        One per row, on the device of the inputs.
    n : int
        Vectors per row, the most a vote of n micro-decisions reads (>= 1). The call holds rows * n vectors.
    """

    def __init__(self, generators: Sequence[torch.Generator], n: int) -> None:
        self.generators = _generators(generators, "row")
        self.n = checks.integer("n", n, 1)
        self._pool: torch.Tensor | None = None
        self._head = np.zeros(len(self.generators), dtype=np.int64)

    def vectors(self, rows: np.ndarray, draws: np.ndarray, size: int, like: torch.Tensor, fill: Fill) -> torch.Tensor:
        """The next ``draws[i]`` vectors of row ``rows[i]`` (distinct rows), consecutive per row:
        [draws.sum(), size], dtype and device of ``like``."""
        if self._pool is None:
            self._pool = torch.empty((len(self.generators), self.n, size), dtype=like.dtype, device=like.device)
            for row, generator in enumerate(self.generators):
                fill(self._pool[row], generator)
        if len(np.unique(rows)) != len(rows) or (self._head[rows] + draws > self.n).any():
            raise ValueError(f"each row reads at most its n = {self.n} vectors, once per call; got rows {rows} "
                             f"asking {draws} after {self._head[rows]}")
        begin = rows * self.n + self._head[rows]
        index = np.repeat(begin - (np.cumsum(draws) - draws), draws) + np.arange(int(draws.sum()))
        self._head[rows] += draws
        return torch.index_select(self._pool.view(-1, size), 0, torch.from_numpy(index).to(self._pool.device))

    def uniforms(self, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        """One tie-breaking number in [0, 1) per row, from the row's generator after its vectors, float64."""
        return torch.cat([torch.rand(1, generator=self.generators[row], device=self.generators[row].device,
                                     dtype=torch.float64) for row in rows]).to(device)


class ImageStreams:
    """One noise stream and one tie stream per image, keyed by the image's identity.

    Parameters
    ----------
    seed : int
        The recorded seed the streams derive from.
    keys : sequence of int
        The identity of each of the B images (its test-split index): image ``b``'s streams are seeded by
        ``derive_seed(seed, "noise", keys[b])`` and ``derive_seed(seed, "ties", keys[b])``.
    device : torch.device
        Where the streams live (the device of the inputs).
    limit : int
        The most noise vectors one image may read in one call (bounds memory to about B * (limit + block)
        vectors); :meth:`rs_repro.smoothing.Smooth.decide` reads at most this many per image per forward group.

    Notes
    -----
    Image b's noise stream is the concatenation of blocks 0, 1, ... of :func:`block_vectors` vectors, each
    filled by one call of the classifier's ``fill`` on b's generator; its tie stream, of blocks of 256 float64
    uniforms.
    Rows read them in the order they ask.
    """

    def __init__(self, seed: int, keys: Sequence[int], device: torch.device | str, limit: int) -> None:
        seed = checks.integer("seed", seed)
        self.keys = [int(k) for k in keys]
        if not self.keys:
            raise ValueError("keys must name at least one image, got none")
        if len(set(self.keys)) != len(self.keys):
            raise ValueError(f"keys must be distinct image identities, got {self.keys}")
        self.device = torch.device(device)
        self.limit = checks.integer("limit", limit, 1)
        self._noise = _Streams([seeds.generator(seed, "noise", k, device=self.device) for k in self.keys])
        self._ties = _Streams([seeds.generator(seed, "ties", k, device=self.device) for k in self.keys])

    def __len__(self) -> int:
        return len(self.keys)

    def vectors(self, rows: np.ndarray, draws: np.ndarray, size: int, like: torch.Tensor, fill: Fill) -> torch.Tensor:
        """The next ``draws[i]`` vectors of image ``rows[i]``'s stream for each i (an image's rows read its
        stream in order), consecutive per row: [draws.sum(), size], dtype and device of ``like``.

        ``rows`` are image indices (0 to B - 1); an image may not read more than ``limit`` vectors in one call.
        """
        if int(draws.sum()) > self.limit:  # else no image can be over the limit
            most = np.bincount(rows, weights=draws).max()
            if most > self.limit:
                raise ValueError(f"an image asked {most:.0f} noise vectors at once, more than the limit {self.limit}")
        return self._noise.read(rows, draws, size, like.dtype, lambda index: block_vectors(size, index), fill)

    def uniforms(self, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        """The next tie-breaking number of image ``rows[i]``'s tie stream for each i, float64 [len(rows)]."""
        ones = np.ones(len(rows), dtype=np.int64)
        return self._ties.read(rows, ones, 1, torch.float64, lambda index: _TIE_BLOCK, _uniform).view(-1).to(device)


def _generators(generators: Sequence[torch.Generator], each: str) -> list[torch.Generator]:
    """``generators`` as a list, checked: at least one, every one a :class:`torch.Generator` (one per ``each``)."""
    listed = list(generators)
    if not listed or not all(isinstance(g, torch.Generator) for g in listed):
        raise ValueError(f"generators must be one torch.Generator per {each}, got {generators!r}")
    return listed


def _uniform(out: torch.Tensor, generator: torch.Generator) -> None:
    """Fill ``out`` with uniform numbers in [0, 1) from ``generator``."""
    out.uniform_(0.0, 1.0, generator=generator)


class _Streams:
    """B streams of vectors, one generator each, read in order; what is drawn and not yet read is kept in a
    pool [B, capacity, size] (its ready part of image b: ``head[b]`` to ``tail[b]``)."""

    def __init__(self, generators: list[torch.Generator]) -> None:
        self.generators = generators
        self.pool: torch.Tensor | None = None
        self.head = np.zeros(len(generators), dtype=np.int64)
        self.tail = np.zeros(len(generators), dtype=np.int64)
        self.blocks = np.zeros(len(generators), dtype=np.int64)  # blocks drawn per stream

    def read(self, rows: np.ndarray, draws: np.ndarray, size: int, dtype: torch.dtype,
             block: Callable[[int], int], fill: Fill) -> torch.Tensor:
        """The next ``draws[i]`` vectors of stream ``rows[i]`` for each i, consecutive per row (a stream's rows
        read it in their order): [draws.sum(), size]. A stream's block j holds ``block(j)`` vectors, filled by one
        ``fill`` call (``block`` grows with j up to a bound)."""
        if not len(rows):
            return torch.empty((0, size), dtype=dtype, device=self.generators[0].device)
        need = np.bincount(rows, weights=draws, minlength=len(self.generators)).astype(np.int64)
        self._ensure(need, size, dtype, block, fill)
        begin = rows * self.pool.shape[1] + self.head[rows]
        if not (need[rows] == draws).all():  # some stream has several rows: each starts after the earlier ones
            order = np.argsort(rows, kind="stable")
            before = np.cumsum(draws[order]) - draws[order]
            first_of_stream = np.zeros(len(self.generators), dtype=np.int64)
            present, first = np.unique(rows[order], return_index=True)
            first_of_stream[present] = before[first]
            begin[order] += before - first_of_stream[rows[order]]
        if draws.min() == draws.max():  # as many vectors for every row
            flat_index = (begin[:, None] + np.arange(draws[0])).ravel()
        else:
            flat_index = np.repeat(begin, draws) + np.arange(int(draws.sum())) - np.repeat(np.cumsum(draws) - draws,
                                                                                           draws)
        self.head += need
        return torch.index_select(self.pool.view(-1, size), 0, torch.from_numpy(flat_index).to(self.pool.device))

    def _ensure(self, need: np.ndarray, size: int, dtype: torch.dtype, block: Callable[[int], int],
                fill: Fill) -> None:
        """Make at least ``need[b]`` vectors ready in each stream b, drawing whole blocks from its generator."""
        pool = self.pool
        if pool is not None and (pool.shape[2] != size or pool.dtype != dtype):
            if (self.tail > self.head).any():
                raise ValueError(f"the noise vectors changed from {pool.shape[2]} {pool.dtype} numbers to {size} "
                                 f"{dtype} while some were drawn and not read")
            pool = None
            self.head[:] = self.tail[:] = 0
        capacity = int(need.max(initial=0)) + block(_LAST_GROWTH)  # the largest block
        if pool is None or pool.shape[1] < capacity:
            wider = torch.empty((len(self.generators), capacity, size), dtype=dtype,
                                device=self.generators[0].device)
            if pool is not None:
                for b in np.flatnonzero(self.tail > self.head):
                    wider[b, :self.tail[b] - self.head[b]] = pool[b, self.head[b]:self.tail[b]]
                self.tail -= self.head
                self.head[:] = 0
            pool = self.pool = wider
        for b in np.flatnonzero(self.tail - self.head < need):
            ready = int(self.tail[b] - self.head[b])
            if ready and self.head[b]:
                pool[b, :ready] = pool[b, self.head[b]:self.tail[b]].clone()
            self.head[b], self.tail[b] = 0, ready
            while self.tail[b] < need[b]:
                vectors = block(int(self.blocks[b]))
                fill(pool[b, self.tail[b]:self.tail[b] + vectors], self.generators[b])
                self.tail[b] += vectors
                self.blocks[b] += 1
