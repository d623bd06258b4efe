"""Randomized smoothing: the majority vote g_{sigma,n} and Cohen's PREDICT / CERTIFY.

Given a base classifier f (a :class:`torch.nn.Module` returning logits), the smoothed classifier of
Cohen, Rosenfeld and Kolter, *Certified Adversarial Robustness via Randomized Smoothing* (ICML 2019),
and eq. (1) of Maho, Furon and Le Merrer, *Randomized Smoothing under Attack: How Good is it in
Practice?* (ICASSP 2022), is

    g_sigma(x) = argmax_y P[f(x + sigma N) = y],    N ~ N(0, I_d).

It is not computable; in practice it is replaced by

* the plain **majority vote** g_{sigma,n}(x) of n noisy micro-decisions y_i = f(x + sigma N_i)
  (ICASSP 2022, section 3.1; what the attacked models of the paper answer), ties broken uniformly at
  random from the noise's generator, see :meth:`Smooth.vote` and :func:`top_class`;
* Cohen's **PREDICT**, which abstains unless a two-sided binomial test separates the two most voted
  classes at level alpha (Cohen et al. 2019, section 3.2.1), see :meth:`Smooth.predict`;
* Cohen's **CERTIFY**, which returns the class guessed from n0 draws together with the certified l2
  radius R = sigma * Phi^{-1}(pA_lower) (Cohen et al. 2019, Thm. 1; ICASSP 2022, eq. (2)), pA_lower being
  the one-sided (1 - alpha) Clopper-Pearson lower bound of pA from n fresh draws, see
  :meth:`Smooth.certify` and :meth:`Smooth.certify_batch`.

Conventions (``docs/architecture.md``): the Gaussian noise is added in [0, 1] pixel space, normalisation being the base
model's first layer, and noisy inputs are never clipped. Every random draw comes from an explicit
:class:`torch.Generator`. Votes break ties at random (:func:`top_class`): with n = 10, a vote on a two-class
boundary is a tie with probability P[Bin(10, 1/2) = 5] = 0.246, and a fixed rule (the first maximum) would
make g_{sigma,n} and eq. (4)'s probability depend on the order of the labels. CERTIFY is Cohen's, its
selection of cA from n0 draws included (smallest index on ties, as in Cohen et al.'s ``core.py``). One chunk
of ``batch_size`` noisy inputs is in memory at a time, whatever n and the number of images.

This module knows nothing of the attacks: they query g_{sigma,n} through
:func:`rs_repro.attacks.oracle.smoothed_oracle`, and :func:`rs_repro.attacks.verification.verify` checks
eq. (4) at the points they return.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import scipy.stats
import torch

from rs_repro import checks, theory
from rs_repro.noise import ImageStreams, SharedNoise

__all__ = ["ABSTAIN", "CPU_FORWARD_ROWS", "AlwaysAbstainWarning", "Smooth", "pick_top", "top_class"]

#: Label returned by PREDICT and CERTIFY when they abstain (as in Cohen et al.'s ``core.py``).
ABSTAIN: int = -1

#: The dtypes :func:`top_class` accepts for vote counts.
_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)

#: The most noisy inputs the base classifier takes in one forward pass on a CPU (the noise is still drawn a
#: ``batch_size`` chunk at a time). A larger batch falls out of the caches: on one thread of this project's CPU
#: the digits MLP runs 230k to 310k rows/s in batches of 256 to 1,536 and 155k to 170k in batches of 2,048 to
#: 10,000 (``bench/bench_vote.py`` measures both). On this CPU the logits of a row are bit-identical whatever the
#: batch it is in, except in a batch of one row (another kernel): a last slice of one row is joined to the one
#: before it. On an accelerator the whole chunk goes in one pass.
CPU_FORWARD_ROWS = 512


class AlwaysAbstainWarning(UserWarning):
    """PREDICT abstains whatever the votes: even n votes out of n give a p-value 2**(1-n) > alpha.

    This is locuslab/smoothing issue #8: with n = 10 and alpha = 0.001, the best-case two-sided
    binomial p-value is 2**-9 = 0.00195 > 0.001. The ICASSP 2022 paper uses n in {10, 50, 100}; its
    smoothed classifier is the plain majority vote :meth:`Smooth.vote`, not PREDICT.
    """


def top_class(counts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The most voted class of each row of vote counts, ties broken uniformly at random.

    Among the classes with the row's largest count, one is chosen uniformly at random: with t tied
    classes, the one of rank floor(t u) among them (ranks 0 to t - 1 in index order), u ~ U[0, 1) drawn
    from ``generator``. Exactly one number is drawn per row, whatever the counts, so the random stream
    that follows does not depend on whether ties happened. This is the label of the vote g_{sigma,n} (ICASSP 2022, section 3.1)
    wherever one is taken from counts: :meth:`Smooth.vote`, :func:`rs_repro.attacks.oracle.smoothed_oracle`.

    Parameters
    ----------
    counts : torch.Tensor, shape [B, K], integer dtype
        ``counts[b, k]``: votes for class k in row b (e.g. :meth:`Smooth.counts`), K >= 1.
    generator : torch.Generator
        Source of the B uniform numbers, on the device of ``counts`` (for a vote, the generator of its
        noise, drawn after the counts).

    Returns
    -------
    torch.Tensor, shape [B], dtype int64, on the device of ``counts``
        The class of each row: the unique most voted class, or a uniformly random one of the tied ones.
        With counts (5, 5) the answer is 0 or 1 with probability 1/2 each.

    Raises
    ------
    TypeError
        ``counts`` is not a :class:`torch.Tensor`, or ``generator`` not a :class:`torch.Generator`.
    ValueError
        ``counts`` is not a 2-D integer tensor with at least one column, or ``generator`` is not on the
        device of ``counts``.
    """
    if not isinstance(counts, torch.Tensor):
        raise TypeError(f"counts must be a torch.Tensor of shape [B, K], got {type(counts).__name__}")
    if counts.dim() != 2 or counts.shape[1] == 0 or counts.dtype not in _INTEGER_DTYPES:
        raise checks.rejected("counts", f"a {counts.dtype} tensor of shape {tuple(counts.shape)}",
                              "an integer tensor of shape [B, K] with K >= 1")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if _device_key(generator.device) != _device_key(counts.device):
        raise checks.rejected("generator", f"a generator on {generator.device}",
                              f"a torch.Generator on the device of counts ({counts.device})")
    return pick_top(counts, torch.rand(counts.shape[0], generator=generator, device=counts.device,
                                       dtype=torch.float64))


def pick_top(counts: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The most voted class of each row of ``counts`` [B, K], the tied one of rank floor(t u) among t tied
    classes, ``u`` [B] float64 in [0, 1) (:func:`top_class` draws it), int64 [B]."""
    top = counts == counts.amax(dim=1, keepdim=True)  # [B, K]: the tied most voted classes
    ties = top.sum(dim=1)  # [B], >= 1
    pick = (u * ties).long().clamp_max_(ties - 1)  # [B], uniform in {0, ..., ties - 1}
    # The (pick + 1)-th tied class: the first column where the running count of tied classes exceeds pick.
    return (top.cumsum(dim=1) > pick.unsqueeze(1)).to(torch.uint8).argmax(dim=1)


def _device_key(device: torch.device) -> tuple[str, int | None]:
    """Canonical (type, index) of a device; an index-less accelerator means its current device."""
    device = torch.device(device)
    index = device.index
    if index is None and device.type == "cuda":
        index = torch.cuda.current_device()
    return device.type, index


class Smooth:
    """A smoothed classifier g around a base classifier f (Cohen et al. 2019; ICASSP 2022, eq. (1)).

    Parameters
    ----------
    base_classifier : torch.nn.Module
        f: maps a batch of inputs [m, C, H, W] in [0, 1] pixel space to logits [m, num_classes]; the
        micro-decision is the argmax of the logits. Normalisation, if any, must be its first layer.
        Putting the model in ``eval()`` mode is the caller's business; :class:`Smooth` only runs it
        under :func:`torch.inference_mode`, on the device of the inputs it is given.
    num_classes : int
        Number of classes K >= 2 (the width of the logits).
    sigma : float
        Standard deviation of the isotropic Gaussian noise, in [0, 1] pixel units (> 0).
    seed : int, default 0
        Seed of the object's own generators (one per device, created lazily) used by every method
        called without ``generator=``. They advance across calls: repeated calls draw fresh noise, and
        a fresh :class:`Smooth` with the same seed replays the same sequence of draws.

    Notes
    -----
    Randomness: every method takes a keyword ``generator``. Given the same generator state, the same
    inputs and the same ``batch_size``, the counts are identical (the chunking decides how the stream of
    Gaussian numbers is cut), and so are the votes (:meth:`vote` draws its tie-breaking numbers from the
    same generator, after the noise). A generator must live on the device of the inputs.

    Examples
    --------
    >>> smooth = Smooth(model.eval(), num_classes=10, sigma=0.25, seed=1)  # doctest: +SKIP
    >>> smooth.vote(xs, n=100)                     # g_{sigma,n}(x) for each x in xs  # doctest: +SKIP
    >>> smooth.certify(xs[0], n0=100, n=10_000, alpha=0.001)  # (cA, radius)  # doctest: +SKIP
    """

    def __init__(
        self,
        base_classifier: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
        num_classes: int,
        sigma: float,
        seed: int = 0,
    ) -> None:
        if not callable(base_classifier):
            raise TypeError(
                f"base_classifier must be a callable torch.nn.Module, got {type(base_classifier).__name__}"
            )
        self.base_classifier = base_classifier
        self.num_classes: int = checks.integer("num_classes", num_classes, 2)
        self.sigma: float = checks.real("sigma", sigma, 0)
        self.seed: int = checks.integer("seed", seed)
        self._generators: dict[tuple[str, int | None], torch.Generator] = {}
        self._buffer_key: tuple[object, ...] | None = None

    def __repr__(self) -> str:
        return f"Smooth(num_classes={self.num_classes}, sigma={self.sigma}, seed={self.seed})"

    # -- randomness ---------------------------------------------------------------------------------

    def noise_generator(self, device: torch.device, generator: torch.Generator | None = None) -> torch.Generator:
        """The generator the noise on ``device`` is drawn from: ``generator`` (checked to be a generator on
        ``device``) or, when it is None, this object's own one for ``device`` (seeded with ``seed`` on
        first use). What :meth:`counts_unchecked` takes."""
        key = _device_key(device)
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
            if _device_key(generator.device) != key:
                raise ValueError(
                    f"generator must be on the device of the inputs ({device}), got a generator on "
                    f"{generator.device}"
                )
            return generator
        own = self._generators.get(key)
        if own is None:
            own = torch.Generator(device=device)
            own.manual_seed(self.seed)
            self._generators[key] = own
        return own

    # -- Monte Carlo vote counts (the hot path) ----------------------------------------------------

    def counts(
        self,
        xs: torch.Tensor,
        n: int,
        batch_size: int = 1000,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Vote counts of n noisy micro-decisions f(x + sigma N_i) for each input x (SAMPLEUNDERNOISE).

        Parameters
        ----------
        xs : torch.Tensor, shape [B, C, H, W], floating point
            B inputs in [0, 1] pixel space (not clipped after adding noise).
        n : int
            Number of noise draws per input (>= 1).
        batch_size : int, default 1000
            Largest number of noisy inputs given to the base classifier at once (>= 1). The B * n noisy
            inputs are drawn in consecutive chunks of at most ``batch_size`` rows; a chunk may span
            several inputs. Memory is bounded by one buffer of ``batch_size`` inputs whatever n and B.
        generator : torch.Generator, optional
            Source of the noise, on the device of ``xs``; default: this object's generator.

        Returns
        -------
        torch.Tensor, shape [B, num_classes], dtype int64, on the device of ``xs``
            ``counts[b, k]`` = number of draws i with argmax f(xs[b] + sigma N_i) = k; rows sum to n.
        """
        xs = checks.images("xs", xs, 4, "[B, C, H, W]")
        n = checks.integer("n", n, 1)
        batch_size = checks.integer("batch_size", batch_size, 1)
        gen = self.noise_generator(xs.device, generator)
        return self.counts_unchecked(xs, n, batch_size, gen)

    def counts_unchecked(self, xs: torch.Tensor, n: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        """:meth:`counts` without its checks, for callers that checked the inputs themselves (the query oracle
        of :func:`rs_repro.attacks.oracle.smoothed_oracle` checks each query's shape, and scanning every query
        for NaN would cost a few percent of a query at n = 1). ``gen`` comes from :meth:`noise_generator`;
        the counts are those :meth:`counts` returns with the same generator.

        The B * n noisy inputs are the rows of a virtual [B * n, d] matrix (row r is a copy of image r // n)
        cut into consecutive chunks of ``batch_size`` rows. Per chunk: fill a buffer with sigma * N
        (``normal_`` in place, from ``gen``), add the images (one broadcast add when the chunk holds whole
        images), forward, take the top class, and one ``bincount`` of ``image * num_classes + label``. The
        buffer and the keys ``(r // n) * num_classes`` are kept between calls (an attack calls this thousands
        of times with the same shapes).
        """
        num_images = xs.shape[0]
        num_classes = self.num_classes
        flat = xs.detach().reshape(num_images, -1)
        total = num_images * n
        chunk = min(batch_size, total)
        buffer, keys = self._buffers(chunk, flat, n)
        counts = None
        with torch.inference_mode():
            for start in range(0, total, chunk):
                stop = min(start + chunk, total)
                noisy = buffer[: stop - start]
                noisy.normal_(0.0, self.sigma, generator=gen)  # sigma * N, in place
                _add_images(noisy, flat, start, stop, n)
                labels = self.top_classes(noisy.view(stop - start, *xs.shape[1:]))
                first = start // n
                if first == (stop - 1) // n:  # one image
                    key = labels.add_(first * num_classes)
                elif start % n == 0:  # whole images from the first row on: the cached keys
                    key = labels.add_(keys[: stop - start])
                    if first:
                        key.add_(first * num_classes)
                else:
                    rows = torch.arange(start, stop, device=labels.device)
                    key = labels.add_(rows.div_(n, rounding_mode="floor").mul_(num_classes))
                tally = torch.bincount(key, minlength=num_images * num_classes)
                counts = tally if counts is None else counts.add_(tally)
        return counts.view(num_images, num_classes)

    def _buffers(self, chunk: int, flat: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A [chunk, d] noise buffer like ``flat`` and the keys (r // n) * num_classes of its rows r, int64
        [chunk], both reused across calls with the same shapes."""
        key = (chunk, flat.shape[1], flat.dtype, flat.device, n)
        if self._buffer_key != key:
            self._buffer = torch.empty((chunk, flat.shape[1]), dtype=flat.dtype, device=flat.device)
            rows = torch.arange(chunk, dtype=torch.int64, device=flat.device)
            self._keys = rows.div_(n, rounding_mode="floor").mul_(self.num_classes)
            self._buffer_key = key
        return self._buffer, self._keys

    def _check_logits(self, logits: object, rows: int) -> None:
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (rows, self.num_classes):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(
                f"base_classifier must return logits of shape [m, num_classes] = [{rows}, {self.num_classes}] "
                f"for a batch of m = {rows} inputs, got {shape}"
            )

    def top_classes(self, inputs: torch.Tensor) -> torch.Tensor:
        """The base classifier's top class for each of ``inputs`` [m, C, H, W] (the first on ties of logits),
        int64 [m] on their device: in slices of :data:`CPU_FORWARD_ROWS` on a CPU, in one pass elsewhere; the
        logits' shape is checked on the first slice."""
        m = len(inputs)
        step = CPU_FORWARD_ROWS if inputs.device.type == "cpu" else max(m, 1)
        top = torch.empty(m, dtype=torch.int64, device=inputs.device)
        for start in range(0, m, step):
            stop = m if m - start <= step + 1 else start + step  # never a last slice of one row
            logits = self.base_classifier(inputs[start:stop])
            if start == 0:
                self._check_logits(logits, stop - start)
            top[start:stop] = logits.max(dim=1).indices
            if stop == m:
                break
        return top

    # -- curtailed decisions: a vote's outcome, drawing only as far as it is settled ----------------------

    def noise_size(self, xs: torch.Tensor) -> int:
        """Numbers in one noise vector for inputs like ``xs`` [B, C, H, W]: d = C H W (noise on the input)."""
        return xs[0].numel()

    def fill_noise(self, out: torch.Tensor, generator: torch.Generator) -> None:
        """Fill ``out`` [k, e] in place with k noise vectors (here sigma * N(0, I_d)) from ``generator``."""
        out.normal_(0.0, self.sigma, generator=generator)

    def micro_decisions(self, flat: torch.Tensor, shape: torch.Size, rows: np.ndarray, draws: np.ndarray,
                        noise: torch.Tensor) -> torch.Tensor:
        """The micro-decisions f(x + noise) of ``draws[i]`` copies of each input ``flat[rows[i]]``.

        Parameters
        ----------
        flat : torch.Tensor, shape [B, d]
            The inputs, flattened; ``shape`` is one input's [C, H, W].
        rows, draws : numpy.ndarray of int64, shape [a]
            Which inputs (distinct, in increasing order: all B of them when a = B), and how many copies of each
            (consecutive in ``noise``).
        noise : torch.Tensor, shape [draws.sum(), e]
            One noise vector per copy (:meth:`noise_size` numbers; overwritten).

        Returns
        -------
        torch.Tensor, shape [draws.sum()], int64: the top class of each copy (the first on ties of logits).
        """
        if draws.min() == draws.max():  # as many copies of each input: one broadcast add
            inputs = flat if len(rows) == len(flat) else flat[torch.from_numpy(rows).to(flat.device)]
            noise.view(len(rows), int(draws[0]), -1).add_(inputs.unsqueeze(1))
        else:
            noise.add_(flat.index_select(0, torch.from_numpy(np.repeat(rows, draws)).to(flat.device)))
        return self.top_classes(noise.view(len(noise), *shape))

    def decide(self, xs: torch.Tensor, ys: torch.Tensor, n: int, noise: SharedNoise | ImageStreams, *,
               needed: int | None = None, streams: np.ndarray | None = None,
               batch_size: int = 1000) -> tuple[torch.Tensor, np.ndarray]:
        """Whether the vote of n micro-decisions at each input is not its label, counted only as far as it decides.

        Without ``needed`` the vote is g_{sigma,n} (ICASSP 2022, section 3.1; ties at random, :func:`pick_top`),
        and the answer is g_{sigma,n}(x) != y; with ``needed`` it is the paper's accelerated rule: at least
        ``needed`` of the n micro-decisions are not y (:func:`rs_repro.theory.votes_needed`). The micro-decisions
        are drawn in rounds: first the fewest that could settle an input's answer (with the majority, all of them
        for y or for its strongest rival; with the rule, all right or all wrong), in the second round again the
        fewest, from the third on at least a quarter of what the input has drawn so far (fewer rounds, each
        with a forward pass's fixed cost), and an input stops as soon as the draws
        left cannot change its answer. The answer is the one all n micro-decisions on the same noise vectors
        would give, so the law of every decision is that of the full vote (tested against the
        binomial closed form on a linear classifier); the saving is in forward passes, reported per input.

        Parameters
        ----------
        xs : torch.Tensor, shape [m, C, H, W]
            The inputs (not checked: the callers check their queries).
        ys : torch.Tensor, shape [m], int64
            Their labels.
        n : int
            Micro-decisions per vote.
        noise : SharedNoise or ImageStreams
            Where each input's noise vectors and tie-breaking number come from (:mod:`rs_repro.noise`); an input
            reads a tie-breaking number only when its vote ends in a tie of the label with other classes.
        needed : int, optional
            The accelerated rule's count, 1 to n.
        streams : numpy.ndarray of int64, shape [m], optional
            The stream (image) each input reads with :class:`~rs_repro.noise.ImageStreams`; default: input i
            reads stream i.
        batch_size : int, default 1000
            Largest number of noisy copies per forward pass (and, with image streams, at most ``noise.limit``
            copies of one image).

        Returns
        -------
        wrong : torch.Tensor, shape [m], bool, on the CPU
            The answers.
        passes : numpy.ndarray, shape [m], int64
            Micro-decisions drawn per input (forward passes of the base model), 1 to n.
        """
        m, classes = xs.shape[0], self.num_classes
        flat = xs.detach().reshape(m, -1)
        streams = np.arange(m) if streams is None else np.asarray(streams, dtype=np.int64)
        size = self.noise_size(xs)
        limit = getattr(noise, "limit", None)
        if n == 1:  # one micro-decision: the vote is it, with no tie (and either rule asks it to be wrong)
            ones = np.ones(m, dtype=np.int64)
            with torch.inference_mode():
                decided = torch.cat([self.micro_decisions(flat, xs.shape[1:], rows, k,
                                                          noise.vectors(streams[rows], k, size, flat, self.fill_noise))
                                     for rows, k in _groups(np.arange(m), ones, streams, batch_size, limit)])
            return (decided != ys.to(decided.device)).cpu(), ones
        labels = ys.detach().cpu().numpy().astype(np.int64)
        counts = np.zeros((m, classes), dtype=np.int64)
        drawn = np.zeros(m, dtype=np.int64)
        # The first round: every vote draws the fewest micro-decisions that could settle it.
        active = np.arange(m)
        draws = np.full(m, _first_draws(n, needed), dtype=np.int64)
        rounds = 0
        with torch.inference_mode():
            while len(active):
                rounds += 1
                for rows, k in _groups(active, draws, streams, batch_size, limit):
                    vectors = noise.vectors(streams[rows], k, size, flat, self.fill_noise)
                    decided = self.micro_decisions(flat, xs.shape[1:], rows, k, vectors).cpu().numpy()
                    counts += np.bincount(np.repeat(rows, k) * classes + decided,
                                          minlength=m * classes).reshape(m, classes)
                    drawn[rows] += k  # an input appears once in a group (its copies may span groups)
                if (drawn[active] == n).all():  # every vote complete (n = 1, or n = 2 with the majority)
                    break
                settled, draws = _next_draws(counts[active], drawn[active], labels[active], n, needed,
                                             grow=rounds >= GROW_AFTER)
                active, draws = active[~settled], draws[~settled]
        if needed is not None:
            return torch.from_numpy(drawn - counts[np.arange(m), labels] >= needed), drawn
        # g_{sigma,n}: the label's count against the most votes; a tie with the label reads a tie number.
        right = counts[np.arange(m), labels]
        top = counts.max(axis=1)
        wrong = right < top
        tied = np.flatnonzero((right == top) & ((counts == top[:, None]).sum(axis=1) > 1))
        if len(tied):
            u = noise.uniforms(streams[tied], torch.device("cpu"))
            wrong[tied] = (pick_top(torch.from_numpy(counts[tied]), u) != torch.from_numpy(labels[tied])).numpy()
        return torch.from_numpy(wrong), drawn

    # -- g_{sigma,n}: plain majority vote -----------------------------------------------------------

    def vote(
        self,
        xs: torch.Tensor,
        n: int,
        batch_size: int = 1000,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The majority-vote classifier g_{sigma,n} of ICASSP 2022 (section 3.1), no abstention.

        Parameters
        ----------
        xs : torch.Tensor, shape [B, C, H, W], floating point
            B inputs in [0, 1] pixel space.
        n : int
            Number of noisy micro-decisions per input (>= 1); the paper uses n in {10, 50, 100}.
        batch_size : int, default 1000
            Largest batch given to the base classifier (see :meth:`counts`).
        generator : torch.Generator, optional
            Source of the noise, on the device of ``xs``; default: this object's generator.

        Returns
        -------
        torch.Tensor, shape [B], dtype int64, on the device of ``xs``
            The most voted class of each input. Tie rule: among classes with equal top counts, one is
            drawn uniformly at random (:func:`top_class`, one uniform number per input drawn from the
            noise's generator after the n draws), e.g. with n = 10, 5 votes for class 3 and 5 for class
            7 give 3 or 7 with probability 1/2 each.
        """
        xs = checks.images("xs", xs, 4, "[B, C, H, W]")
        n = checks.integer("n", n, 1)
        batch_size = checks.integer("batch_size", batch_size, 1)
        gen = self.noise_generator(xs.device, generator)
        return top_class(self.counts_unchecked(xs, n, batch_size, gen), gen)

    def vote_matches(
        self,
        xs: torch.Tensor,
        ys: torch.Tensor,
        n: int,
        batch_size: int = 1000,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Whether g_{sigma,n}(x) = y for each input: :meth:`vote` compared with the labels, each vote drawing only
        as many micro-decisions as its answer needs (:meth:`decide`; same law as ``vote(xs, n) == ys``).

        Parameters
        ----------
        xs : torch.Tensor, shape [B, C, H, W], floating point
            B inputs in [0, 1] pixel space.
        ys : torch.Tensor, shape [B], int64
            Their labels.
        n, batch_size, generator
            As in :meth:`vote`.

        Returns
        -------
        torch.Tensor, shape [B], bool, on the CPU
        """
        xs = checks.images("xs", xs, 4, "[B, C, H, W]")
        n = checks.integer("n", n, 1)
        batch_size = checks.integer("batch_size", batch_size, 1)
        if ys.shape != (xs.shape[0],):
            raise checks.rejected("ys", f"a tensor of shape {tuple(ys.shape)}",
                                  f"one label per input, [{xs.shape[0]}]")
        noise = SharedNoise(self.noise_generator(xs.device, generator))
        return ~self.decide(xs, ys.to(xs.device), n, noise, batch_size=batch_size)[0]

    # -- Cohen et al. PREDICT -----------------------------------------------------------------------

    def predict(
        self,
        x: torch.Tensor,
        n: int,
        alpha: float,
        batch_size: int = 1000,
        *,
        generator: torch.Generator | None = None,
    ) -> int:
        """Cohen et al.'s PREDICT (2019, section 3.2.1): a class, or ABSTAIN when the vote is not clear.

        The two most voted classes (counts c1 >= c2) are compared with a two-sided exact binomial test
        of c1 out of c1 + c2 at p = 1/2; the top class is returned when its p-value is <= alpha. Then the
        returned class differs from g_sigma(x) with probability at most alpha. A tie (c1 = c2) has p-value
        1 and abstains, so no tie rule is needed.

        Parameters
        ----------
        x : torch.Tensor, shape [C, H, W], floating point
            One input in [0, 1] pixel space.
        n : int
            Number of noise draws (>= 1).
        alpha : float
            Level of the test, in (0, 1).
        batch_size : int, default 1000
            Largest batch given to the base classifier.
        generator : torch.Generator, optional
            Source of the noise, on the device of ``x``; default: this object's generator.

        Returns
        -------
        int
            The predicted class, or ``ABSTAIN`` (-1).

        Warns
        -----
        AlwaysAbstainWarning
            When 2**(1-n) > alpha: even n out of n votes cannot pass the test, PREDICT always abstains
            (e.g. n = 10, alpha = 0.001).
        """
        x = checks.images("x", x, 3, "[C, H, W]")
        n = checks.integer("n", n, 1)
        alpha = checks.real("alpha", alpha, 0, 1)
        batch_size = checks.integer("batch_size", batch_size, 1)
        gen = self.noise_generator(x.device, generator)
        best_p = 2.0 ** (1 - n)  # binomtest(n, n, 0.5).pvalue, exact (underflows to 0.0 for huge n)
        if best_p > alpha:
            warnings.warn(
                f"PREDICT always abstains with n={n} and alpha={alpha}: the best-case p-value "
                f"2**(1-n) = {best_p:.3g} exceeds alpha; use a larger n or Smooth.vote",
                AlwaysAbstainWarning,
                stacklevel=2,
            )
        counts = self.counts_unchecked(x.unsqueeze(0), n, batch_size, gen)[0].cpu().numpy()
        top, second = _top2(counts)
        c1, c2 = int(counts[top]), int(counts[second])
        p_value = scipy.stats.binomtest(c1, c1 + c2, 0.5).pvalue
        return ABSTAIN if p_value > alpha else top

    # -- Cohen et al. CERTIFY -----------------------------------------------------------------------

    def certify(
        self,
        x: torch.Tensor,
        n0: int,
        n: int,
        alpha: float,
        batch_size: int = 1000,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[int, float]:
        """Cohen et al.'s CERTIFY (2019, section 3.2.2) for one input: class and certified l2 radius.

        The class cA is guessed as the most voted among n0 draws (smallest index on ties, as in Cohen et
        al.'s ``core.py``; the guess only names the class whose votes are counted next); n fresh
        draws give nA = votes for cA and the one-sided (1 - alpha) Clopper-Pearson lower bound pA_lower.
        With probability >= 1 - alpha, if the result is (cA, R) then g_sigma(x + delta) = cA for every
        ||delta||_2 < R = sigma * Phi^{-1}(pA_lower) (Cohen et al. Thm. 1; ICASSP 2022 eq. (2)).

        Parameters
        ----------
        x : torch.Tensor, shape [C, H, W], floating point
            One input in [0, 1] pixel space.
        n0 : int
            Number of selection draws (>= 1); Cohen et al. use 100.
        n : int
            Number of estimation draws (>= 1); Cohen et al. use 100,000. The largest radius reachable is
            sigma * Phi^{-1}(alpha^(1/n)).
        alpha : float
            Failure probability, in (0, 1); Cohen et al. use 0.001.
        batch_size : int, default 1000
            Largest batch given to the base classifier.
        generator : torch.Generator, optional
            Source of the noise, on the device of ``x``; default: this object's generator.

        Returns
        -------
        tuple[int, float]
            ``(cA, radius)``, or ``(ABSTAIN, 0.0)`` when pA_lower < 1/2.
        """
        x = checks.images("x", x, 3, "[C, H, W]")
        labels, radii = self.certify_batch(x.unsqueeze(0), n0, n, alpha, batch_size, generator=generator)
        return int(labels[0]), float(radii[0])

    def certify_batch(
        self,
        xs: torch.Tensor,
        n0: int,
        n: int,
        alpha: float,
        batch_size: int = 1000,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`certify` for B inputs at once: n0 selection draws for all, then n fresh draws for all.

        Parameters
        ----------
        xs : torch.Tensor, shape [B, C, H, W], floating point
            B inputs in [0, 1] pixel space.
        n0, n, alpha, batch_size, generator
            As in :meth:`certify`.

        Returns
        -------
        labels : torch.Tensor, shape [B], dtype int64, on the CPU
            cA per input, or ``ABSTAIN`` (-1) where pA_lower < 1/2.
        radii : torch.Tensor, shape [B], dtype float64, on the CPU
            sigma * Phi^{-1}(pA_lower), 0.0 where the certification abstains.
        """
        xs = checks.images("xs", xs, 4, "[B, C, H, W]")
        n0 = checks.integer("n0", n0, 1)
        n = checks.integer("n", n, 1)
        alpha = checks.real("alpha", alpha, 0, 1)
        batch_size = checks.integer("batch_size", batch_size, 1)
        gen = self.noise_generator(xs.device, generator)
        selection = self.counts_unchecked(xs, n0, batch_size, gen)
        c_a = selection.argmax(dim=1)  # smallest class index on ties
        estimation = self.counts_unchecked(xs, n, batch_size, gen)
        n_a = estimation.gather(1, c_a.unsqueeze(1)).squeeze(1).cpu().numpy()
        # One-sided (1 - alpha) Clopper-Pearson bound = lower end of the two-sided 1 - 2 alpha interval.
        p_lower = np.asarray(theory.clopper_pearson(n_a, np.full_like(n_a, n), 2 * alpha)[0])
        certified = p_lower >= 0.5
        radii = np.where(certified, theory.certified_radius(p_lower, self.sigma), 0.0)
        labels = np.where(certified, c_a.cpu().numpy(), ABSTAIN)
        return torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(radii.astype(np.float64))


#: Rounds of a curtailed vote that draw the fewest micro-decisions that could settle it (a clean input settles
#: within them); from the next one on, a vote draws at least 1 / :data:`GROWTH_DIVISOR` of what it has drawn
#: (the rule of ``_next_draws``).
GROW_AFTER = 2
#: The divisor of what a vote has drawn that bounds its next draws from below after :data:`GROW_AFTER` rounds
#: (a quarter). On the digits model (a round's fixed cost about that of a hundred rows),
#: 100 queries per call at n = 10 to 100, it spends the fewest rows plus rounds of the schedules tried (the
#: fewest draws always, or from the third round at least a quarter, a half or all of what was drawn).
GROWTH_DIVISOR = 4


def _first_draws(n: int, needed: int | None) -> int:
    """The micro-decisions every vote draws first: the fewest after which it can be settled (a majority,
    floor(n / 2) + 1, or with the rule min(needed, n - needed + 1))."""
    return n // 2 + 1 if needed is None else min(needed, n - needed + 1)


def _next_draws(counts: np.ndarray, drawn: np.ndarray, labels: np.ndarray, n: int,
                needed: int | None, grow: bool) -> tuple[np.ndarray, np.ndarray]:
    """Which votes are settled, and how many micro-decisions each other one draws next (bool [a], int64 [a]).

    ``counts`` [a, K] are the votes so far, ``drawn`` [a] their number, ``labels`` [a] the labels. With the
    majority (``needed`` None), y's count c and its strongest rival's o with r draws left: settled when
    c > o + r (y wins whatever follows) or o > c + r (y loses whatever follows); next, the fewest draws after
    which one of the two can hold, min(floor((o + r - c) / 2), floor((c + r - o) / 2)) + 1. With the rule, w
    wrong votes: settled when w >= needed or w + r < needed; next, min(needed - w, r + w - needed + 1).
    With ``grow`` (from round :data:`GROW_AFTER` + 1 on) a vote draws at least a quarter of what it has drawn
    so far (at most r): what it has drawn grows geometrically, so it takes at most about 2 + log(n) / log(5/4)
    rounds (in practice 3 to 6), each a forward pass whose fixed cost is that of about a hundred rows of a
    small model, for at most about a quarter more draws than the fewest-draws schedule.
    """
    rows = np.arange(len(counts))
    right = counts[rows, labels]
    left = n - drawn
    if needed is None:
        counts[rows, labels] = -1
        rival = counts.max(axis=1)
        settled = (right > rival + left) | (rival > right + left)
        draws = np.minimum((rival + left - right) // 2, (right + left - rival) // 2) + 1
    else:
        wrong = drawn - right
        settled = (wrong >= needed) | (wrong + left < needed)
        draws = np.minimum(needed - wrong, left + wrong - needed + 1)
    settled |= left == 0
    if grow:
        draws = np.maximum(draws, -(-drawn // GROWTH_DIVISOR))
    return settled, np.clip(draws, 1, np.maximum(left, 1))


def _groups(rows: np.ndarray, draws: np.ndarray, streams: np.ndarray, batch_size: int,
            limit: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut a round (``draws[i]`` copies of input ``rows[i]``, in order) into forward groups of at most
    ``batch_size`` copies, and at most ``limit`` copies of one stream; an input's copies may span groups."""
    total = int(draws.sum())
    if total <= batch_size and (limit is None or total <= limit
                                or np.bincount(streams[rows], weights=draws).max() <= limit):
        return [(rows, draws)]
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    group_rows: list[int] = []
    group_draws: list[int] = []
    used: dict[int, int] = {}
    total = 0
    for row, k in zip(rows.tolist(), draws.tolist(), strict=True):
        stream = int(streams[row])
        while k:
            room = batch_size - total
            if limit is not None:
                room = min(room, limit - used.get(stream, 0))
            if room <= 0:
                groups.append((np.array(group_rows, dtype=np.int64), np.array(group_draws, dtype=np.int64)))
                group_rows, group_draws, used, total = [], [], {}, 0
                continue
            take = min(k, room)
            group_rows.append(row)
            group_draws.append(take)
            used[stream] = used.get(stream, 0) + take
            total += take
            k -= take
    groups.append((np.array(group_rows, dtype=np.int64), np.array(group_draws, dtype=np.int64)))
    return groups


def _add_images(noisy: torch.Tensor, flat: torch.Tensor, start: int, stop: int, n: int) -> None:
    """Add to the noise of the global rows [start, stop) their images (row r is a copy of image r // n).

    ``noisy`` is [stop - start, d], ``flat`` is [B, d]. At most three in-place broadcast adds: the rows of a
    partial first image, the whole images (viewed as [k, n, d]), the rows of a partial last image.
    """
    first, last = start // n, (stop - 1) // n
    if first == last:
        noisy.add_(flat[first])
        return
    head_end = -start % n  # local end of the partial first image (0 when the chunk starts on an image)
    whole_first = first + (head_end > 0)  # the first image whose n rows are all in the chunk
    whole = (stop - start - head_end) // n
    if head_end:
        noisy[:head_end].add_(flat[first])
    tail_start = head_end + whole * n
    if whole:
        noisy[head_end:tail_start].view(whole, n, -1).add_(flat[whole_first: whole_first + whole].unsqueeze(1))
    if tail_start < stop - start:
        noisy[tail_start:].add_(flat[last])


def _top2(counts: np.ndarray) -> tuple[int, int]:
    """Indices (c1, c2) of the two most voted classes, counts[c1] >= counts[c2], ties to the smaller."""
    order = np.argsort(-counts, kind="stable")
    return int(order[0]), int(order[1])
