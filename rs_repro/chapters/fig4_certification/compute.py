"""What the ``fig4_certification`` chapter computes: Fig. 4 of Maho, Furon, Le Merrer (ICASSP 2022).

Cohen et al.'s CERTIFY on the standard model under smoothing at two noise levels, chosen by the clean
accuracy they cost (paper: about 3% and 12%), and on the noise-trained model (RandTrain) at its training
sigma. On a dataset where no model is trained here (ImageNet, not in :data:`rs_repro.models.ARCHITECTURES`)
RandTrain comes from its checkpoint (``randtrain_weights``); without one it is absent
(:func:`rs_repro.chapters.common.absent_models`) and only the standard model is certified. Every image draws its
noise from its own generator (:func:`rs_repro.seeds.generator`), so the results do not depend on the order,
the batching or a resumed run.

The plan (:func:`plan`) has three stages: the base models (:func:`rs_repro.chapters.common.model_units`); the
clean accuracy of each, the sweep over sigma and the certified images (:func:`selection_units`); CERTIFY by
chunks of :data:`CHUNK` images at the two noise levels the sweep picks (:func:`chosen_sigmas`,
:func:`certification_units`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rs_repro import data, seeds
from rs_repro.chapters import common
from rs_repro.checks import rule_checker
from rs_repro.models import accuracy, load_model
from rs_repro.pipeline.engine import Stage, Unit, fixed
from rs_repro.smoothing import Smooth, top_class

#: The base models of the chapter (the standard model, smoothed at two noise levels, and RandTrain).
MODELS = ("standard", "randtrain")
#: Images per CERTIFY unit.
CHUNK = 10


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = common.data_and_models(values, MODELS, device=True)
    common.pool_rule(values, "num_images", size)
    need(len(values["sigmas"]) in (0, 2) and len(set(values["sigmas"])) == len(values["sigmas"])
         and all(s > 0 for s in values["sigmas"]), "sigmas", "[] (chosen from the sweep) or two distinct noises > 0")
    need(len(values["accuracy_costs"]) == 2 and all(0 <= c < 1 for c in values["accuracy_costs"]),
         "accuracy_costs", "two accuracy drops in [0, 1)")
    need(bool(values["sweep_sigmas"]) and all(s > 0 for s in values["sweep_sigmas"]), "sweep_sigmas",
         "a non-empty list of noises > 0")
    need(values["randtrain_sigma"] > 0, "randtrain_sigma", "a noise > 0")
    need(0 < values["alpha"] < 1, "alpha", "a failure probability in (0, 1)")
    for name in ("sweep_n", "n0", "n", "batch_size"):
        need(values[name] >= 1, name, "at least 1")


def plan(values: Mapping[str, Any]) -> list[Stage]:
    """The chapter's work in three stages.

    ``models``: a ``model-<name>`` unit per base model that exists (:func:`rs_repro.chapters.common.model_specs`
    of :data:`MODELS`). ``selection``: the clean accuracies, the sweep over sigma and the certified images
    (:func:`selection_units`). ``certification``: CERTIFY (:func:`certification_units`) at the two noise levels
    :func:`chosen_sigmas` reads from the selection's tables, for the images of its ``images`` table.
    """
    where, specs = _where(values), common.model_specs(values, MODELS)

    def certification(done: Mapping[str, pd.DataFrame]) -> list[Unit]:
        return certification_units(values, chosen_sigmas(done, values), len(done["images"]))

    return [Stage("models", fixed(common.model_units(where["dataset"], where["data_dir"], specs))),
            Stage("selection", fixed(selection_units(values))), Stage("certification", certification)]


def _where(values: Mapping[str, Any]) -> dict[str, Any]:
    """The unit arguments every unit of the chapter shares (the test images, the batch, the device, the seed)."""
    return {"dataset": values["dataset"], "data_dir": values["data_dir"] or None, "subset": values["num_images"] or None,
            "subset_seed": values["seed"], "batch_size": values["batch_size"], "device": values["device"],
            "seed": values["seed"]}


def selection_units(values: Mapping[str, Any]) -> list[Unit]:
    """The units the noise levels are chosen from: the clean accuracy of each base model that exists
    (``clean-<name>``, :func:`clean_unit`), the sweep over sigma (:func:`sweep_units`) and the certified
    test images (``images``, :func:`images_unit`)."""
    where, specs = _where(values), common.model_specs(values, MODELS)
    images = {k: where[k] for k in ("dataset", "data_dir", "subset", "subset_seed")}
    clean = [Unit(f"clean-{name}", f"{__name__}:clean_unit",
                  {**images, "batch_size": where["batch_size"], "device": where["device"], "model": dict(spec),
                   "name": name}) for name, spec in specs.items()]
    return clean + sweep_units(**where, model=specs["standard"], sigmas=values["sweep_sigmas"], n=values["sweep_n"]) \
        + [Unit("images", f"{__name__}:images_unit", images)]


def sweep_table(done: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of the :func:`sweep_units` units, joined in the order of ``sweep_sigmas``."""
    return pd.concat([done[f"sweep-sigma{sigma:g}"] for sigma in values["sweep_sigmas"]], ignore_index=True)


def chosen_sigmas(done: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> tuple[float, float]:
    """The two noise levels of the standard model, smaller first: the ``sigmas`` parameter, or those the sweep
    picks for the two ``accuracy_costs`` (:func:`choose_sigmas`), from the tables of :func:`selection_units`."""
    clean = done["clean-standard"].accuracy.iloc[0]
    chosen = list(values["sigmas"]) or choose_sigmas(sweep_table(done, values), clean, values["accuracy_costs"])
    if len(set(chosen)) != 2:
        raise ValueError(f"need two distinct smoothing noises for the standard model, got {chosen} (set sigmas, "
                         "or refine sweep_sigmas so that the two accuracy_costs pick different values)")
    low, high = sorted(chosen)
    return low, high


def certification_units(values: Mapping[str, Any], sigmas: tuple[float, float], count: int) -> list[Unit]:
    """CERTIFY of the ``count`` test images for the standard model at both ``sigmas`` and for RandTrain at its
    training noise (unless it is absent), by chunks of :data:`CHUNK` images
    (:func:`rs_repro.chapters.common.certify_units`)."""
    where, specs = _where(values), common.model_specs(values, MODELS)
    configs = [("standard", sigmas[0]), ("standard", sigmas[1]), ("randtrain", values["randtrain_sigma"])]
    return [unit for name, sigma in configs if name in specs
            for unit in common.certify_units(**where, images=list(range(count)), chunk=CHUNK, model=specs[name],
                                             name=name, sigma=sigma, n0=values["n0"], n=values["n"],
                                             alpha=values["alpha"])]


def sigma_sweep(model: nn.Module, num_classes: int, x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float],
                n: int, batch_size: int, seed: int) -> pd.DataFrame:
    """Accuracy of the smoothed standard model over a grid of sigma (how the paper chose its sigma).

    Two accuracies per sigma, from the same n votes per image of ``x`` [B, C, H, W] with labels ``y`` [B]:
    ``vote_accuracy``, the majority vote g_{sigma,n} (plurality, as the attacked models answer), and
    ``majority_accuracy``, the fraction of images whose true class gets more than half of the votes
    (pA > 1/2), which is what CERTIFY's certified accuracy at radius 0 tends to as n grows and what Fig. 4
    starts from.

    Returns
    -------
    pandas.DataFrame
        Columns ``sigma, n, vote_accuracy, majority_accuracy``.
    """
    device = next(model.parameters()).device
    rows = []
    for sigma in sigmas:
        gen = seeds.generator(seed, "sweep", sigma, device=device)
        counts = Smooth(model, num_classes, sigma).counts(x.to(device), n, batch_size, generator=gen).cpu()
        true_votes = counts.gather(1, y.unsqueeze(1)).squeeze(1)
        rows.append({"sigma": sigma, "n": n,
                     "vote_accuracy": float((top_class(counts.to(device), gen).cpu() == y).double().mean()),
                     "majority_accuracy": float((2 * true_votes > n).double().mean())})
    return pd.DataFrame(rows)


def choose_sigmas(sweep: pd.DataFrame, clean_accuracy: float, costs: Sequence[float]) -> list[float]:
    """For each target cost, the swept sigma whose cost (clean - majority accuracy) is closest to it."""
    cost = clean_accuracy - sweep["majority_accuracy"].to_numpy()
    return [float(sweep["sigma"].iloc[int(np.argmin(np.abs(cost - target)))]) for target in costs]


def clean_unit(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int, model: Mapping[str, Any],
               name: str, batch_size: int, device: str) -> pd.DataFrame:
    """One row ``model, accuracy``: the clean accuracy of a base model on the test images."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    test = common.test_pool(dataset, data_dir, subset or 0, subset_seed)
    return pd.DataFrame([{"model": name, "accuracy": accuracy(base, test.x, test.y, batch_size=batch_size)}])


def images_unit(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int) -> pd.DataFrame:
    """The certified test images: the test split, or its seeded subset of ``subset`` images drawn with
    ``subset_seed``; one row per image, column ``idx`` (its position in the test split)."""
    return pd.DataFrame({"idx": common.test_pool(dataset, data_dir, subset or 0, subset_seed).index.tolist()})


def sweep_unit(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int,
               model: Mapping[str, Any], sigma: float, n: int, batch_size: int, device: str,
               seed: int) -> pd.DataFrame:
    """The row of :func:`sigma_sweep` at one ``sigma`` on the test images (``subset``: see
    :func:`images_unit`)."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    test = common.test_pool(dataset, data_dir, subset or 0, subset_seed)
    return sigma_sweep(base, data.num_classes(dataset), test.x, test.y, [sigma], n, batch_size, seed)


def sweep_units(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int,
                model: Mapping[str, Any], sigmas: Sequence[float], n: int, batch_size: int, device: str = "cpu",
                seed: int) -> list[Unit]:
    """The sweep over sigma, one unit per sigma (``sweep-sigma<sigma>``; each draws from its own generator, so
    the rows are those of one :func:`sigma_sweep` over all of them)."""
    return [Unit(f"sweep-sigma{sigma:g}", f"{__name__}:sweep_unit",
                 {"dataset": dataset, "data_dir": data_dir, "subset": subset, "subset_seed": subset_seed,
                  "model": dict(model), "sigma": sigma, "n": n, "batch_size": batch_size, "device": device,
                  "seed": seed}) for sigma in sigmas]
