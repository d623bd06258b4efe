"""The query oracle: the one door every decision-based attack goes through.

Decision-based attacks (HSJA, SurFree, RayS) only see whether a query is adversarial. The oracle answers
that question for a batch of rows, each row belonging to one of the B images under attack, and keeps the
books the reference implementations do not keep (``attacks.md``): one query per row and per image,
initialisation, checks and final searches included; a hard per-image budget (an exhausted image is never
sent to the model again); the number of base-model forward passes (under smoothing, the micro-decisions each
vote drew: at most n per query, fewer where the vote was settled early); each
image's best adversarial so far; and a history (query index, l2, l-inf, verdict) from which one run gives
the distortion at every budget.

Under randomized smoothing the attacked classifier is the random majority vote g_{sigma,n} of Maho, Furon
and Le Merrer (ICASSP 2022, section 3), see :func:`smoothed_oracle`: each image's noise comes from its own
streams (:class:`rs_repro.noise.ImageStreams`), keyed by the image's identity, so that an image's answers do not
depend on the other images of the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from rs_repro import checks, seeds, theory
from rs_repro.noise import ImageStreams, RowNoise
from rs_repro.smoothing import Smooth

#: The signature of a decision rule, ``decide(xs, ys, images) -> (bool [m], int64 [m])``, saying whether each
#: row of ``xs`` [m, C, H, W] is adversarial for label ``ys`` [m] (``images`` [m] being the index of each row's
#: image in the started batch) and how many base-model forward passes its answer took.
Decision = Callable[[torch.Tensor, torch.Tensor, np.ndarray], tuple[torch.Tensor, np.ndarray]]


class Answer(NamedTuple):
    """The oracle's answer to m query rows (:meth:`Oracle.query`).

    Attributes
    ----------
    adversarial : torch.Tensor
        bool [m], on the CPU: the verdicts, ``False`` where the row was not counted.
    counted : torch.Tensor
        bool [m], on the CPU: which rows were within their image's budget, sent to the classifier and
        counted.
    """

    adversarial: torch.Tensor
    counted: torch.Tensor


@dataclass
class AttackResult:
    """What an attack returns for B images: the oracle's books at the end of the run.

    Attributes
    ----------
    x_adv : torch.Tensor, shape [B, C, H, W]
        Best adversarial query in l2 (the original image where none was found).
    l2, linf : torch.Tensor, shape [B], float64
        Its l2 and l-inf distortions (inf where none was found).
    x_adv_linf, best_linf : torch.Tensor
        Best adversarial query in l-inf, [B, C, H, W], and its l-inf distortion [B].
    success : torch.Tensor, shape [B], bool
        Whether some query was adversarial.
    queries, forward_passes : torch.Tensor, shape [B], int64
        Queries made and base-model forward passes spent per image.
    history : pandas.DataFrame
        Every query: ``image, query, l2, linf, adversarial``.
    x_final : torch.Tensor or None
        [B, C, H, W]: the attack's own last iterate, where the attack keeps one apart from the oracle's
        best accepted query (HSJA's current boundary point); ``None`` otherwise. Under a random oracle the
        two differ: the best accepted query may be a lucky answer the attack itself moved away from.
    diagnostics : dict of str to torch.Tensor
        Per-image counters an attack reports about its own run ([B] each), e.g. HSJA's ``gradient_steps``
        and ``one_label_steps``.
    """

    x_adv: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor
    x_adv_linf: torch.Tensor
    best_linf: torch.Tensor
    success: torch.Tensor
    queries: torch.Tensor
    forward_passes: torch.Tensor
    history: pd.DataFrame
    x_final: torch.Tensor | None = None
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)


class Oracle:
    """Counted, budgeted access to a classifier for B images under attack.

    Parameters
    ----------
    model : callable
        Maps inputs [m, C, H, W] in [0, 1] to logits [m, K]; a row is adversarial when its argmax differs
        from the image's label (one forward pass). Ignored for the decision when ``decide`` is given.
    max_queries : int
        Hard budget per image (>= 1).
    decide : callable, optional
        A :data:`Decision` replacing the argmax rule (:class:`SmoothedOracle` has its own).
    batch_size : int, default 1000
        Largest number of rows given to ``decide`` at once (counting each repeat as a row).
    repeats : int, default 1
        The attacker's repeat-and-vote (issue 14): each query row is asked ``repeats`` times and answered
        by the majority of the answers (a tie counts as not adversarial). A row then costs ``repeats``
        queries of the budget and the forward passes of its ``repeats`` answers; the attack sees one
        answer, as if the classifier were the k-fold vote.
    jitter : float, default 0.0
        l2 norm of the offset of each repeat: the repeats (or the single ask, with ``repeats`` 1) are asked at
        ``x + jitter * u``, u uniform on the unit sphere and fresh for every ask, the attacker's counter to a
        defence that always gives the same answer to the same input (:func:`smoothed_oracle` with
        ``noise="input-hash"``). Distances and the best adversarial are those of the row itself.
    jitter_seed : int, default 0
        Seed of the jitter's generator, reset by :meth:`start` (on the device of the images).

    Notes
    -----
    Call :meth:`start` with the images and labels, then :meth:`query` (or :meth:`is_adversarial`, its
    verdicts alone) with query rows and the index (into the started batch) of the image each row belongs to.
    The books count budget units: with ``repeats`` k, ``queries`` grows by k per row, the history's
    ``query`` column is the budget spent when the row was answered, and :attr:`remaining` is in rows.
    """

    def __init__(self, model: Callable[[torch.Tensor], torch.Tensor] | None, max_queries: int, *,
                 decide: Decision | None = None, batch_size: int = 1000, repeats: int = 1, jitter: float = 0.0,
                 jitter_seed: int = 0) -> None:
        self.max_queries = checks.integer("max_queries", max_queries, 1)
        self.batch_size = checks.integer("batch_size", batch_size, 1)
        self.repeats = checks.integer("repeats", repeats, 1)
        self.jitter = checks.real("jitter", jitter, 0, include_low=True)
        self.jitter_seed = checks.integer("jitter_seed", jitter_seed)
        if decide is None and model is None:
            raise ValueError("Oracle needs a model or a decide function, got neither")
        self.model = model
        self._decide = decide if decide is not None else self._argmax_decision
        self.x0: torch.Tensor | None = None

    @torch.inference_mode()
    def _argmax_decision(self, xs: torch.Tensor, ys: torch.Tensor, images: np.ndarray) -> tuple[torch.Tensor,
                                                                                                 np.ndarray]:
        return self.model(xs).argmax(1) != ys, np.ones(len(xs), dtype=np.int64)

    def start(self, x: torch.Tensor, y: torch.Tensor, keys: Sequence[int] | None = None) -> None:
        """Bind the B images ``x`` [B, C, H, W] and labels ``y`` [B]; reset every counter and record.

        ``keys`` [B]: each image's identity (its test-split index), which a random oracle seeds the image's
        noise with (:class:`SmoothedOracle`); default 0 to B - 1.
        """
        if x.dim() != 4 or y.shape != (x.shape[0],):
            raise ValueError(f"x must be [B, C, H, W] and y [B], got {tuple(x.shape)} and {tuple(y.shape)}")
        batch = x.shape[0]
        self.keys = list(range(batch)) if keys is None else [int(k) for k in keys]
        if len(self.keys) != batch:
            raise ValueError(f"keys must name the {batch} images, got {len(self.keys)} keys")
        self.x0 = x.detach().clone()
        self.y = y.detach().clone()
        self._jitter_generator = torch.Generator(device=x.device).manual_seed(self.jitter_seed)
        self.queries = torch.zeros(batch, dtype=torch.int64)
        self.passes = torch.zeros(batch, dtype=torch.int64)
        self.best_x = self.x0.clone()
        self.best_l2 = torch.full((batch,), float("inf"), dtype=torch.float64)
        self.best_x_linf = self.x0.clone()
        self.best_linf = torch.full((batch,), float("inf"), dtype=torch.float64)
        self.linf_of_best_l2 = torch.full((batch,), float("inf"), dtype=torch.float64)
        # The per-row bookkeeping runs on NumPy views of these CPU tensors (same memory): a NumPy op on a
        # few hundred numbers costs about a microsecond, a torch op ten, and an attack makes thousands of calls.
        self._books = _Books(self.queries.numpy(), self.passes.numpy(), self.best_l2.numpy(), self.best_linf.numpy(),
                             self.linf_of_best_l2.numpy(), self.y.cpu().numpy(),
                             self.x0.flatten(1).numpy() if _numpy_able(self.x0) else None)
        self._history: list[tuple[np.ndarray, ...]] = []

    @property
    def forward_passes(self) -> torch.Tensor:
        """Base-model forward passes spent per image, int64 [B], those actually drawn (a curtailed vote
        counts the micro-decisions it drew, not n)."""
        return self.passes

    @property
    def remaining(self) -> torch.Tensor:
        """Query rows each image can still ask, int64 [B] (budget left over ``repeats``)."""
        return (self.max_queries - self.queries) // self.repeats

    def active(self, images: torch.Tensor | None = None) -> torch.Tensor:
        """Whether each image (all B, or those indexed by ``images``) can still ask a row, bool."""
        alive = self.queries + self.repeats <= self.max_queries
        return alive if images is None else alive[images.cpu()]

    def distances(self, xs: torch.Tensor, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """l2 and l-inf distances of rows ``xs`` [m, C, H, W] to their images ``images`` [m], float64 [m] each.

        On the CPU in NumPy (float32 sums below 2^16 dimensions, float64 above), elsewhere (or for dtypes
        NumPy lacks, such as bfloat16) in torch.
        """
        img = images.cpu().numpy() if isinstance(images, torch.Tensor) else images
        wide = xs[0].numel() > 1 << 16  # a float32 sum of 10^5 squares would lose digits: sum in float64
        if self._books.x0 is not None and _numpy_able(xs):
            delta = xs.detach().numpy().reshape(len(img), -1) - self._books.x0[img]
            if wide:
                delta = delta.astype(np.float64)
            l2 = np.sqrt(np.einsum("ij,ij->i", delta, delta), dtype=np.float64)
            return l2, np.abs(delta, out=delta).max(axis=1, initial=0.0).astype(np.float64)
        delta = (xs.detach() - self.x0[torch.from_numpy(img)].to(xs.device)).flatten(1)
        if wide and delta.dtype != torch.float64:
            delta = delta.double()
        l2 = torch.linalg.vector_norm(delta, dim=1)
        linf = torch.linalg.vector_norm(delta, ord=float("inf"), dim=1)
        return l2.double().cpu().numpy(), linf.double().cpu().numpy()

    def is_adversarial(self, xs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The verdicts of :meth:`query`, bool [m] on the CPU, for the callers that need no more."""
        return self.query(xs, images).adversarial

    def query(self, xs: torch.Tensor, images: torch.Tensor) -> Answer:
        """Answer one query per row: is ``xs[i]`` adversarial for image ``images[i]``?

        Parameters
        ----------
        xs : torch.Tensor, shape [m, C, H, W]
            Query points.
        images : torch.Tensor, shape [m], int64
            Index of each row's image in the started batch.

        Returns
        -------
        Answer
            The verdicts and which rows were counted, bool [m] each, on the CPU. Rows beyond an image's
            remaining budget (counting the rows of this call in order, ``repeats`` queries each) are not
            sent to the model, not counted, and answered ``False``.
        """
        if self.x0 is None:
            raise RuntimeError("call Oracle.start(x, y) before querying it")
        img = images.cpu().long().numpy()
        books = self._books
        batch = len(books.queries)
        if xs.shape[0] != img.shape[0] or xs.shape[1:] != self.x0.shape[1:] or img.ndim != 1:
            raise ValueError(f"xs must be [m, {', '.join(map(str, self.x0.shape[1:]))}] with one image index per "
                             f"row, got xs {tuple(xs.shape)} and images {tuple(images.shape)}")
        m = len(img)
        per_image = np.bincount(img, minlength=batch) if m == 0 or img.min() >= 0 else None
        if per_image is None or len(per_image) > batch:
            raise ValueError(f"images must index the {batch} started images (0 to {batch - 1}), "
                             f"got values from {img.min()} to {img.max()}")
        k = self.repeats
        if m == 0 or per_image.max() <= 1:  # one row per image, the common case: no ranking needed
            rank = None
            query_index = books.queries[img] + k
        else:  # rank of each row among the rows of its image in this call, to cut at the remaining budget
            order = np.argsort(img, kind="stable")
            rank = np.empty(m, dtype=np.int64)
            rank[order] = np.arange(m) - (np.cumsum(per_image) - per_image)[img[order]]
            query_index = books.queries[img] + k * (rank + 1)
        allowed = query_index <= self.max_queries
        everything = bool(allowed.all())
        verdict = np.zeros(m, dtype=bool)
        rows = np.arange(m) if everything else np.flatnonzero(allowed)
        step = max(self.batch_size // k, 1)
        for start in range(0, len(rows), step):
            block = rows[start:start + step]
            labels = torch.from_numpy(books.y[img[block]]).to(xs.device)
            points = xs if len(block) == m else xs[torch.from_numpy(block).to(xs.device)]  # every row: no gather
            verdict[block], passes = self._answer(points, labels, img[block])
            np.add.at(books.passes, img[block], passes)
        l2, linf = self.distances(xs, img)
        if everything:
            books.queries += k * per_image
            self._history.append((img, query_index, l2, linf, verdict))
        else:
            books.queries += k * np.bincount(img[allowed], minlength=batch)
            self._history.append((img[allowed], query_index[allowed], l2[allowed], linf[allowed], verdict[allowed]))
        rows = np.flatnonzero(verdict)
        if len(rows):
            unique = rank is None
            self._update_best(xs, img[rows], rows, l2, books.best_l2, self.best_x, unique,
                              (books.linf_of_best_l2, linf))
            self._update_best(xs, img[rows], rows, linf, books.best_linf, self.best_x_linf, unique)
        return Answer(torch.from_numpy(verdict), torch.from_numpy(allowed))

    def _answer(self, xs: torch.Tensor, ys: torch.Tensor, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The verdicts on rows ``xs`` [m, C, H, W] of images ``images`` [m] for labels ``ys`` [m]: one decision
        each, or the majority of ``repeats`` decisions (at jittered copies when ``jitter`` > 0), bool [m] as
        NumPy, and the forward passes each row took, int64 [m]."""
        k = self.repeats
        if k == 1 and self.jitter == 0:
            verdict, passes = self._decide(xs, ys, images)
            return verdict.cpu().numpy(), passes
        copies = xs.repeat_interleave(k, dim=0) if k > 1 else xs
        if self.jitter > 0:
            u = torch.randn(copies.shape, generator=self._jitter_generator, device=xs.device, dtype=xs.dtype)
            norms = u.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (xs.dim() - 1)))
            copies = copies + (self.jitter / norms) * u
        answers, passes = self._decide(copies, ys.repeat_interleave(k), np.repeat(images, k))
        return (2 * answers.cpu().view(len(xs), k).sum(1) > k).numpy(), passes.reshape(len(xs), k).sum(1)

    @staticmethod
    def _update_best(xs: torch.Tensor, img: np.ndarray, rows: np.ndarray, dist: np.ndarray, best: np.ndarray,
                     best_x: torch.Tensor, unique: bool, also: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Where an adversarial row (``rows``, of images ``img``) beats ``best`` [B] for its image, store it
        (and ``also``'s value). ``unique``: no image has two rows, so no per-image minimum is needed."""
        d = dist[rows]
        better = d < best[img]
        if not unique:  # the closest adversarial row of each image, the first one on ties
            lowest = np.full(len(best), np.inf)
            np.minimum.at(lowest, img, d)
            better &= d == lowest[img]
            better[better] = _first_of_each(img[better])
        if not better.any():
            return
        rows, img = rows[better], img[better]
        best_x[torch.from_numpy(img).to(best_x.device)] = xs[torch.from_numpy(rows).to(xs.device)].detach().to(
            best_x.device, best_x.dtype)
        best[img] = dist[rows]
        if also is not None:
            also[0][img] = also[1][rows]

    def result(self, x_final: torch.Tensor | None = None,
               diagnostics: dict[str, torch.Tensor] | None = None) -> AttackResult:
        """The books as an :class:`AttackResult` (what every attack returns), with the attack's own last
        iterate ``x_final`` [B, C, H, W] and ``diagnostics`` where it has them."""
        return AttackResult(x_adv=self.best_x.clone(), l2=self.best_l2.clone(), linf=self.linf_of_best_l2.clone(),
                            x_adv_linf=self.best_x_linf.clone(), best_linf=self.best_linf.clone(),
                            success=torch.isfinite(self.best_l2), queries=self.queries.clone(),
                            forward_passes=self.forward_passes.clone(), history=self.history(),
                            x_final=None if x_final is None else x_final.detach().clone(),
                            diagnostics=dict(diagnostics or {}))

    def history(self) -> pd.DataFrame:
        """Every counted query: columns ``image, query, l2, linf, adversarial`` (query = 1-based index)."""
        columns = ("image", "query", "l2", "linf", "adversarial")
        if not self._history:
            return pd.DataFrame({c: [] for c in columns})
        parts = [np.concatenate(p) for p in zip(*self._history, strict=True)]
        return pd.DataFrame(dict(zip(columns, parts, strict=True))).sort_values(["image", "query"],
                                                                                ignore_index=True)

    def best_at(self, budgets: Sequence[int], norm: str = "l2") -> np.ndarray:
        """Best (smallest) distance of an adversarial query within each budget, per image.

        Returns
        -------
        numpy.ndarray, shape [B, len(budgets)]
            ``inf`` where no adversarial query was made within the budget.
        """
        checks.choice("norm", norm, ("l2", "linf"))
        out = np.full((len(self.queries), len(budgets)), np.inf)
        hist = self.history()
        adv = hist[hist.adversarial.astype(bool)]
        for image, part in adv.groupby("image"):
            running = np.minimum.accumulate(part[norm].to_numpy())
            reached = np.searchsorted(part["query"].to_numpy(), np.asarray(budgets), side="right")
            out[int(image)] = np.where(reached > 0, running[np.maximum(reached - 1, 0)], np.inf)
        return out


#: How :func:`smoothed_oracle` draws the noise of a query: ``fresh`` (the paper's g_{sigma,n}: new noise every
#: time) or ``input-hash`` (a defence variant: the noise is seeded by a hash of the query's bytes, so the same
#: input always gets the same answer).
NOISE_SEEDINGS = ("fresh", "input-hash")


#: About how many noise numbers a :class:`SmoothedOracle` may hold ready for its images (128 MB in float32); each
#: image reads at most ``batch_size / B`` vectors per forward group, or more when this allows.
STREAM_NUMBERS = 1 << 25


class SmoothedOracle(Oracle):
    """A query oracle on g_{sigma,n} (ICASSP 2022, sections 3.4 and 4): :func:`smoothed_oracle` builds it.

    Each query is one vote of n noisy micro-decisions, counted only as far as its answer is settled
    (:meth:`~rs_repro.smoothing.Smooth.decide`); its forward passes are those it drew. With ``noise="fresh"``
    the noise of image b's queries is b's own stream (:class:`~rs_repro.noise.ImageStreams`, seeded by
    ``seed`` and the key :meth:`Oracle.start` gives b), so an image's answers do not depend on the other
    images of the batch. See :func:`smoothed_oracle` for the parameters.
    """

    def __init__(self, smooth: Smooth, n: int, needed: int | None, *, max_queries: int, batch_size: int, seed: int,
                 noise: str, noise_key: int, repeats: int, jitter: float, jitter_seed: int) -> None:
        super().__init__(smooth.base_classifier, max_queries, decide=self._smoothed_decision, batch_size=4096,
                         repeats=repeats, jitter=jitter, jitter_seed=jitter_seed)
        self.smooth, self.n, self.needed = smooth, n, needed
        self.noise_batch_size, self.seed, self.noise, self.noise_key = batch_size, seed, noise, noise_key

    def start(self, x: torch.Tensor, y: torch.Tensor, keys: Sequence[int] | None = None) -> None:
        """:meth:`Oracle.start`, and each image's noise streams from ``seed`` and its key."""
        super().start(x, y, keys)
        batch, size = len(self.keys), self.smooth.noise_size(x)
        limit = max(self.noise_batch_size // batch, min(self.noise_batch_size, STREAM_NUMBERS // (batch * size)), 1)
        self._streams = ImageStreams(self.seed, self.keys, x.device, limit=limit)

    def _smoothed_decision(self, xs: torch.Tensor, ys: torch.Tensor,
                           images: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        if self.noise == "fresh":
            return self.smooth.decide(xs, ys, self.n, self._streams, needed=self.needed, streams=images,
                                      batch_size=self.noise_batch_size)
        # input-hash: each row's noise from a generator seeded by its bytes, the rows answered in batches of at
        # most STREAM_NUMBERS noise numbers (n vectors a row)
        step = max(1, STREAM_NUMBERS // (self.n * self.smooth.noise_size(xs)))
        answers = [self.smooth.decide(rows, labels, self.n,
                                      RowNoise([_input_generator(row, self.noise_key) for row in rows.split(1)], self.n),
                                      needed=self.needed, batch_size=self.noise_batch_size)
                   for rows, labels in zip(xs.split(step), ys.split(step), strict=True)]
        return torch.cat([a for a, _ in answers]), np.concatenate([p for _, p in answers])


def smoothed_oracle(smooth: Smooth, n: int, pa: float | None = None, *, max_queries: int,
                    batch_size: int = 10_000, seed: int = 0, noise: str = "fresh", noise_key: int = 0,
                    repeats: int = 1, jitter: float = 0.0, jitter_seed: int = 0) -> SmoothedOracle:
    """A query oracle on g_{sigma,n} for decision-based attacks (ICASSP 2022, sections 3.4 and 4).

    Each query is one vote of n fresh noisy micro-decisions. Without ``pa`` a query is adversarial when the
    majority vote g_{sigma,n} differs from the label, a tie being broken uniformly at random as in
    :meth:`~rs_repro.smoothing.Smooth.vote` (:func:`~rs_repro.smoothing.pick_top`, from the image's tie
    stream): a tie between the label and one other class is adversarial with probability 1/2. With ``pa``, a
    query is adversarial when at least ceil(n * pa) of the n micro-decisions are wrong, the paper's
    accelerated rule (:func:`rs_repro.theory.votes_needed`), which is stricter than eq. (4) (see the theory
    chapter) and needs no tie rule. Either way a vote stops drawing as soon as its answer is settled
    (:meth:`~rs_repro.smoothing.Smooth.decide`): the answer is the full vote's on the same noise, and the
    forward passes booked are those drawn (at most n per query).

    Parameters
    ----------
    smooth : rs_repro.smoothing.Smooth
        The smoothed classifier: its base classifier, sigma and noise law (any subclass with its own
        :meth:`~rs_repro.smoothing.Smooth.micro_decisions`, e.g. :class:`rs_repro.hidden_noise.HiddenNoise`).
    n : int
        Micro-decisions per query (>= 1).
    pa : float, optional
        Level P_a in (0, 1] of the accelerated rule.
    max_queries : int
        Per-image query budget.
    batch_size : int
        Largest batch of noisy inputs per forward pass.
    seed : int, default 0
        With ``noise="fresh"``: image b's noise and tie streams are seeded by ``seed`` and b's key
        (:meth:`Oracle.start`; :class:`~rs_repro.noise.ImageStreams`).
    noise : str, default ``"fresh"``
        One of :data:`NOISE_SEEDINGS`. ``input-hash``: the draws of a query (and its tie-breaking number)
        come from a generator seeded by ``noise_key`` and the SHA-256 of the query's bytes (dtype, shape and
        values), so asking the same point again gives the same answer and repeating a query buys the attacker
        nothing (:class:`~rs_repro.noise.RowNoise`: a row's n vectors drawn at once, the rows of a call answered
        in one batch).
    noise_key : int, default 0
        The defender's secret of ``input-hash`` seeding.
    repeats, jitter, jitter_seed
        The attacker's repeat-and-vote (and its jittered variant), see :class:`Oracle`.

    Returns
    -------
    SmoothedOracle
    """
    n = checks.integer("n", n, 1)
    batch_size = checks.integer("batch_size", batch_size, 1)
    checks.choice("noise", noise, NOISE_SEEDINGS)
    return SmoothedOracle(smooth, n, None if pa is None else int(theory.votes_needed(n, pa)),
                          max_queries=max_queries, batch_size=batch_size, seed=checks.integer("seed", seed),
                          noise=noise, noise_key=checks.integer("noise_key", noise_key), repeats=repeats,
                          jitter=jitter, jitter_seed=jitter_seed)


def _input_generator(row: torch.Tensor, key: int) -> torch.Generator:
    """A generator on the device of ``row`` [1, C, H, W] seeded by ``key`` and a hash of the row's bytes."""
    data = row.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode() + data.numpy().tobytes()).hexdigest()
    return seeds.generator(key, "input-hash", digest, device=row.device)


@dataclass
class _Books:
    """NumPy views of an :class:`Oracle`'s per-image counters and records (sharing the tensors' memory)."""

    queries: np.ndarray
    passes: np.ndarray
    best_l2: np.ndarray
    best_linf: np.ndarray
    linf_of_best_l2: np.ndarray
    y: np.ndarray
    x0: np.ndarray | None  # the images, flattened [B, d], when they are on the CPU in a NumPy dtype


def _numpy_able(t: torch.Tensor) -> bool:
    """Whether ``t`` has a NumPy view: on the CPU in a dtype NumPy knows."""
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64, torch.float16)


def _first_of_each(img: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence of each value of ``img`` [k]."""
    first = np.zeros(len(img), dtype=bool)
    first[np.unique(img, return_index=True)[1]] = True
    return first
