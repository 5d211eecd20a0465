"""`ModelSpace`: the whole pipeline behind one estimator object.

    space = ModelSpace(methods=["saliency", "lrp"], store="runs/store",
                       runtime=Runtime(device="cuda", batch_size=64))   # executor=RayExecutor(...) for a cluster
    space.fit(load_zoo("zoo.toml"), ProbeSet.from_folder("probe/"))
    space.results_["saliency"].affinity          # (N, N) mean-of-cosines matrix
    space.results_["saliency"].ranking["depth"]  # sources of target 'depth', best first
    space.evaluate("taskonomy")                  # P@K / R@K against a ground truth
    space.score_with_labels(images, labels)      # LogME, H-score, ... per model, on labelled images
    space.add(another_spec)                      # computes its maps and one new row only
    space.save("runs/out")                       # matrices, rankings, trees, plots, results.json

Configuration goes to `__init__`, the work happens in `fit`, results land in attributes with a
trailing underscore (the scikit-learn convention). A spec whose source names nothing that exists
(a mistyped model name, module, callable or file) is an InputError before any model loads
(`models.check_sources`). A model that fails (cannot load, has no such encoder layer, gives
all-zero or non-finite maps, has a layer ε-LRP cannot propagate through) is recorded in `failures_`
and left out of that method's results only: its other methods, and the other models, are
unaffected. A baseline that the probe set leaves undefined for every model alike (fewer images than
it needs, copies of one image) is no model's failure: it is named in `not_computed_` with the reason
(``results.json``'s "not_computed"), and no model runs for it. A failure that would happen again
(anything but running out of memory or disk, a network or weights not on this machine:
`models.load_repeatable` for loading) is kept in the store, and later fits skip that model and
method with "skipped, failed before: <reason>" unless `retry_failed` is set; a load failure is kept
per zoo entry, so editing the entry tries it again. When some model needs weights that are not
cached and the network cannot be reached, the models load with the Hugging Face hub offline
(`models.offline_needed`): missing weights fail at once. A store that cannot be written or read at
all (`StorageError`: read-only, disk full, locked) is not a model's failure: it stops the run,
keeping the work already stored. A model removed from the store by another process while it is
computed (`modelspace remove` or `gc`) is a failure of that model, never remembered in the store:
nothing more of it is computed or stored.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from . import results
from ._version import __version__
from .attribution import DEFAULT_METHODS, METHODS, AttributionMethod, backward_groups, get_method
from .errors import InputError, ModelRemovedError, ModelspaceError, StorageError, check_int
from .evaluation import Evaluation, GroundTruth, evaluate_matrices, relevant_for
from .maps import (
    EXECUTORS,
    EntryKey,
    half_key,
    LocalExecutor,
    MapStore,
    RayExecutor,
    Runtime,
    encoder_activations,
    kept_torch_state,
    prepare_baselines,
    repeatable as _repeatable,
    run_error as _run_error,
    wrapped_error as _wrapped,
    source_probabilities,
)
from .models import (
    PROBE_SIZE_CAP,
    LoadedModel,
    ModelSpec,
    check_sources,
    hub_offline_mode,
    load_model,
    load_repeatable,
    normalise_name,
    offline_needed,
    probe_size_for,
    spec_key,
)
from .probe import ProbeSet
from .progress import progress as progress_bar
from .results import Failure, Keyed, MethodResult
from .transferability import DEFAULT_SCORES, TransferabilityScore, cannot_rank, get_score
from .identity import find
from .registry import Declared
from .similarity import (
    BASELINES,
    CONFIDENCE_SEED,
    MapSketcher,
    Prepared,
    Similarity,
    Estimate,
    affinity_halves,
    affinity_halves_row,
    affinity_matrix,
    affinity_row,
    compare_all,
    compare_halves,
    confidence_k,
    half_masks,
    judge,
    too_few_images,
    get_baseline,
    rank_sources,
    similarity_tree,
    sketched_affinity,
    spread,
)

__all__ = ["DEFAULT_ESTIMATOR", "DEFAULT_METHODS", "Failure", "MethodResult", "ModelSpace", "default_estimators",
           "get_estimator_id"]

_log = logging.getLogger(__name__)  # under "modelspace": the CLI prints its records to stderr

DEFAULT_ESTIMATOR = "dds"
"""The label-free estimator `modelspace run` leads with: an attribution method, a baseline or a fusion.

It is what the report's summary lines use when no ground truth picks the best; `modelspace run` computes
whatever it needs beside the attribution methods (`default_estimators`). The paper's three methods
(`DEFAULT_METHODS`) are always computed whatever it is. Its value is the choice of the rule registered in
`data/world/candidates.toml`, applied by `modelspace study` to every registered candidate on four probe domains
(real photographs among them); the figures it was chosen on are in `docs/study/table.md`."""

SKETCH_SEED = 0  # one projection for every sketch in a store, so that sketches stay comparable


@dataclass
class _Member:
    """A model of the space: its spec, identity and store keys per method."""

    spec: ModelSpec
    key: str
    entries: dict[str, EntryKey]
    prepared: dict[str, Prepared] = field(default_factory=dict)  # baseline id -> prepared activations
    preprocessing: dict = field(default_factory=dict)  # what T_i uses and where it came from


class ModelSpace:
    """Attribution-map model space of a set of models over one probe set.

    Parameters
    ----------
    methods : sequence of str or AttributionMethod, or None
        Attribution methods (names, aliases, ids such as ``"transformed(method='gxi',pool=4)"``, or
        `AttributionMethod` objects; `attribution.list_methods`). None (the default): the paper's three
        (`DEFAULT_METHODS`) and any method `DEFAULT_ESTIMATOR` needs.
    baselines : sequence of str or Similarity, or None
        Label-free baselines on the encoder activations of the same probe set
        (`similarity.list_baselines`) and fusions; their matrices sit beside
        the methods' in `results_` and are evaluated alike. None (the default): whatever
        `DEFAULT_ESTIMATOR` needs (`default_estimators`); ``()`` computes none. These defaults are
        the CLI's too: `modelspace run` and `ModelSpace().fit` compute the same estimators. Each model's
        encoder activations are computed once (one forward pass) and kept in the store in each
        baseline's compact prepared form, not as activations, like its maps: later fits reuse them.
        DEPARA also takes the affinity of its `method`, which must be among `methods`. A baseline that
        the probe set leaves undefined for every model (too few images, copies of one image:
        `Similarity.undefined_on`), and a fusion of one, is not computed: `not_computed_` says why.
    store : str, Path, MapStore or None
        Folder of the map store (resumable across runs); None uses a temporary folder.
    runtime : Runtime
        How each model runs: device, precision, memory layout, batch size, data-loading workers and the
        memory one pass may keep for its backward (`maps.Runtime`). Maps of another precision are
        stored under their own key.
    executor : LocalExecutor or RayExecutor
        Where the units of work run, and how large they are (`shard_size`). `LocalExecutor` (the
        default): models one after another in this process. `RayExecutor`: on a Ray cluster, one actor
        per model, this process the store's only writer (`maps.execution.ray`; needs the ``ray`` extra,
        imported only when it runs). See docs/guide/ray.md.
    sketch : int or None
        None (exact affinities), or k: affinities estimated from k-dimensional random
        projections of the maps (`similarity.sketch`), kept in the store, so that later fits and
        `add` never read the maps of models already sketched. For very large stores; the error
        against the exact affinity is measured in `benchmarks/RESULTS.md`. Methods with several
        maps per image (``gradient_x_input_subspace``) are compared exactly whatever this says.
    linkage : str
        Scipy linkage method of the similarity tree.
    on_error : str
        "record" keeps going and lists failures in `failures_`; "raise" stops at the first.
    retry_failed : bool
        Compute again the maps of models and methods that the store records as failed before.
    recompute : sequence of str
        Names of models whose stored maps (and the affinities and sketches made from them) and
        prepared baseline forms are dropped and computed again. A model's store key covers its spec and weights, not its code:
        after editing the code of a ``python:`` model, name it here (CLI: ``--recompute NAME``).
    progress : bool
        Show progress bars.

    Raises
    ------
    InputError
        At `fit` / `embed`: a bad argument, named.
    """

    def __init__(
        self,
        methods: Sequence[str | AttributionMethod] | None = None,
        baselines: Sequence[str | Similarity] | None = None,
        store: str | Path | MapStore | None = None,
        runtime: Runtime = Runtime(),
        executor: LocalExecutor | RayExecutor = LocalExecutor(),
        sketch: int | None = None,
        linkage: str = "average",
        on_error: str = "record",
        retry_failed: bool = False,
        recompute: Sequence[str] = (),
        progress: bool = True,
    ) -> None:
        self.methods = methods
        self.baselines = baselines
        self.store = store
        self.runtime = runtime
        self.executor = executor
        self.sketch = sketch
        self.linkage = linkage
        self.on_error = on_error
        self.retry_failed = retry_failed
        self.recompute = recompute
        self.progress = progress

    # ------------------------------------------------------------------ public API

    def fit(self, models: Iterable[ModelSpec | LoadedModel], probe: ProbeSet | str | Path | Any) -> "ModelSpace":
        """Compute (or reuse from the store) every model's maps, then the affinities and trees.

        Parameters
        ----------
        models : iterable of ModelSpec or LoadedModel
            The models (`load_zoo` reads a zoo file into specs).
        probe : ProbeSet, str, Path or array
            The probe images: a `ProbeSet`; a folder of images, read as the CLI reads one (at the
            models' largest input side, at most 224 px: `probe_size_for`); a ``.npz`` written by
            `ProbeSet.save` (``modelspace probe``); or an (N, 3, S, S) array.

        Returns
        -------
        ModelSpace
            The space itself, fitted: `results_`, `failures_` and the rest are set.

        Raises
        ------
        InputError
            Invalid settings, an unknown source, a probe that cannot be read, or a `recompute` name that is
            none of the models'. A model that fails to load or to run does not raise: it is recorded in
            `failures_`.
        """
        self.embed(models, probe)
        self._assemble()
        self._judge()
        return self

    def embed(self, models: Iterable[ModelSpec | LoadedModel], probe: ProbeSet | str | Path | Any) -> "ModelSpace":
        """Only the maps: compute whatever the store lacks (`fit` without the affinities).

        Parameters
        ----------
        models : iterable of ModelSpec or LoadedModel
            The models, as `fit` takes them.
        probe : ProbeSet, str, Path or array
            The probe images, as `fit` takes them.

        Returns
        -------
        ModelSpace
            The space itself, its maps in the store (no results yet).

        Raises
        ------
        InputError
            As `fit`.
        """
        self._validate()
        models = list(models)
        specs = [m for m in models if isinstance(m, ModelSpec)]
        check_sources(specs)  # a typo fails here, not after the other models' work
        self.probe_ = self._probe_set(probe, models)
        self.store_ = self._open_store()
        self.methods_, baselines = self._estimators()
        self.baselines_, self.not_computed_ = self._defined(baselines)
        self.members_: dict[str, _Member] = {}
        self.failures_: list[Failure] = []
        # units (model x method x shard) computed here / found stored; models whose encoder activations
        # were computed for the baselines / whose prepared forms were all found stored
        self.work_ = {"computed": 0, "reused": 0, "activations_computed": 0, "activations_reused": 0}
        for stale in ("label_scores_", "label_info_"):  # scores of another set of models
            self.__dict__.pop(stale, None)
        names = {m.spec.name if isinstance(m, LoadedModel) else getattr(m, "name", None) for m in models}
        self._recompute = list(dict.fromkeys(normalise_name(n) for n in self.recompute))  # as specs keep names
        unknown = [n for n in self._recompute if n not in names]
        if unknown:  # a typo would otherwise silently reuse the stale maps it was meant to drop
            raise InputError(f"recompute: no model named {', '.join(map(repr, unknown))} among the models given")
        self.placements_: list[dict] = []  # with a RayExecutor: where each computed unit ran
        if isinstance(self.executor, RayExecutor):
            self._embed_ray(models)
            return self
        self._offline = offline_needed(specs)  # once per fit: a probe of the download hosts, if any
        shown = progress_bar(models, desc="models", unit="model", disable=not self.progress or len(models) < 2)
        with hub_offline_mode(self._offline):
            for model in shown:
                with kept_torch_state():  # a model's code may change torch's global settings: not for the next
                    self._embed(model)
        return self

    def add(self, model: ModelSpec | LoadedModel) -> "ModelSpace":
        """Add one model: only its maps and its row of each affinity matrix are computed.

        Parameters
        ----------
        model : ModelSpec or LoadedModel
            The model, not yet in the space.

        Returns
        -------
        ModelSpace
            The space itself, with the model in its results (or in `failures_`).

        Raises
        ------
        ModelspaceError
            The space is not fitted yet.
        InputError
            A model of that name is in the space already, or its source is unknown.
        """
        self._check_fitted(assembled=False)
        if isinstance(model, ModelSpec):
            check_sources([model])
        if isinstance(self.executor, RayExecutor):
            self._embed_ray([model])
        else:
            with kept_torch_state(), hub_offline_mode(offline_needed([model] if isinstance(model, ModelSpec) else [])):
                self._embed(model)
        self._assemble()
        self._judge()
        return self

    def remove(self, name: str, purge: bool = False) -> "ModelSpace":
        """Drop a model from the space (and, with purge=True, its maps from the store).

        Parameters
        ----------
        name : str
            The model's name, matched in its normal form, as specs keep names (`models.normalise_name`).
        purge : bool, default False
            Also remove its maps and records from the store.

        Returns
        -------
        ModelSpace
            The space itself, without the model.

        Raises
        ------
        ModelspaceError
            The space is not fitted yet.
        InputError
            No model of that name in the space.
        """
        self._check_fitted(assembled=False)
        name = normalise_name(name) if isinstance(name, str) else name
        if name not in self.members_:
            raise InputError(f"no model named {name!r} in this space; models: {', '.join(self.members_)}")
        member = self.members_.pop(name)
        if purge:
            self.store_.remove_model(member.key)
        self._assemble()
        self._judge()
        return self

    @property
    def names_(self) -> dict[str, list[str]]:
        """The models in each estimator's results (method or baseline id -> names, in fit order).

        A model that failed one method is missing from that method's list only.
        """
        self._check_fitted()
        return {estimator: list(r.names) for estimator, r in self.results_.items()}

    def score_with_labels(
        self,
        images: ProbeSet | str | Path | Any,
        labels: Sequence[Any],
        scores: Sequence[str | TransferabilityScore] = DEFAULT_SCORES,
        models: Iterable[LoadedModel] = (),
    ) -> dict[str, dict[str, float]]:
        """Label-based transferability scores of every model of the space on labelled target images.

        Parameters
        ----------
        images : ProbeSet, str, Path or array
            The labelled target images, read as `fit` reads a probe set.
        labels : sequence
            One label per image (class labels; float targets for ``LogME(regression=True)``).
        scores : sequence of str or TransferabilityScore
            Names or objects from `transferability` (`list_scores`; default `DEFAULT_SCORES`): "logme",
            "hscore", "transrate", "gbc" on each model's global-average-pooled encoder output R; "leep",
            "nce" on the softmax of the model's whole output (its classifier head), for models that have one.
        models : iterable of LoadedModel
            Loaded models of the space to use as they are (matched by name), e.g. those passed to
            `fit` as `LoadedModel` objects: a space keeps only specs, and every other model is loaded
            again from its spec, one at a time.

        Returns
        -------
        dict
            score id -> {model name: score}, higher is better; also kept in `label_scores_`. A model
            for which a score fails (no classifier head, degenerate features) is left out of that
            score and recorded in `failures_`. `label_info_` holds the counts of images and classes,
            and per score why it cannot rank these models, if it cannot (`transferability.cannot_rank`:
            e.g. H-score on fewer images than feature dimensions); `summary` reports both. Cost per model: one forward pass to R over the images
            (with pooling) and, for LEEP / NCE, one whole forward pass; then the scores (LogME: one
            SVD of the (N, C) features).

        Raises
        ------
        ModelspaceError
            The space is not fitted yet.
        InputError
            No scores, repeated or unknown scores, as many labels as images not given, a model in
            `models` that is not a `LoadedModel` of the space, or labels a score cannot take.
        """
        self._check_fitted(assembled=False)
        if isinstance(scores, (str, TransferabilityScore)) or not scores:
            raise InputError("scores: expected a non-empty list of score names, e.g. ['logme', 'hscore']")
        scorers = [get_score(s) for s in scores]
        ids = [s.id for s in scorers]
        if len(set(ids)) != len(ids):
            raise InputError(f"scores are repeated: {ids}")
        target = self._probe_set(images, [m.spec for m in self.members_.values()])
        if isinstance(labels, str) or len(labels) != len(target):
            raise InputError(f"labels: expected {len(target)} labels (one per image), got "
                             f"{1 if isinstance(labels, str) else len(labels)}")
        given = {}
        for model in models:
            if not isinstance(model, LoadedModel) or model.name not in self.members_:
                raise InputError(f"models: expected LoadedModel objects of models in this space, got "
                                 f"{getattr(model, 'name', type(model).__name__)!r}")
            given[model.name] = model
        batch = target.batch(0, len(target))
        self.label_scores_: dict[str, dict[str, float]] = {i: {} for i in ids}
        dims: dict[str, dict[str, int]] = {"features": {}, "probs": {}}  # per input kind, per model: its columns
        for name, member in progress_bar(list(self.members_.items()), desc="label scores", unit="model",
                                         disable=not self.progress or len(self.members_) < 2):
            with kept_torch_state(), hub_offline_mode(getattr(self, "_offline", False)):
                inputs = self._label_inputs(name, given.get(name) or member.spec, batch, {s.takes for s in scorers})
            for kind, x in inputs.items():
                dims[kind][name] = int(np.shape(x)[1])
            for scorer in scorers:
                if scorer.takes not in inputs:
                    continue  # its input could not be computed: recorded already
                try:
                    self.label_scores_[scorer.id][name] = scorer(inputs[scorer.takes], labels)
                except InputError:
                    raise  # the labels' fault, the same for every model
                except ModelspaceError as exc:
                    self._fail(name, scorer.id, exc)
        self.label_info_ = _label_counts(labels)
        self.label_info_["cannot_rank"] = {
            s.id: cannot_rank(s, self.label_scores_[s.id], len(target), self.label_info_["n_classes"], dims[s.takes])
            for s in scorers}
        return self.label_scores_

    def _label_inputs(self, name: str, model: ModelSpec | LoadedModel, batch: torch.Tensor,
                      takes: set[str]) -> dict[str, np.ndarray]:
        """A model's pooled encoder features and / or source-class probabilities on the labelled images."""
        try:
            loaded = model if isinstance(model, LoadedModel) else load_model(model, self.runtime.device)
        except ModelspaceError as exc:
            self._fail(name, "label scores", exc)
            return {}
        self.runtime.prepare(loaded.module)
        inputs = {}
        runs = {"features": lambda: encoder_activations(loaded, batch, self.runtime.batch_size, self.runtime,
                                                        progress=False, pool=True),
                "probs": lambda: source_probabilities(loaded, batch, self.runtime.batch_size, self.runtime, progress=False)}
        for kind in sorted(takes):
            try:
                inputs[kind] = runs[kind]()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - as in _embed: the model is recorded, the run goes on
                self._fail(name, "label scores" if kind == "features" else "label scores (classifier head)",
                           _run_error(loaded, exc))
        return inputs

    def evaluate(self, truth: GroundTruth | str | Path, n_relevant: int | None = None,
                 models: Sequence[str] | None = None) -> Evaluation:
        """P@K and R@K of every method's ranking against a ground truth, beside random and oracle.

        Models are matched to the truth's tasks by their task label (`ModelSpec.task`, else name).

        Parameters
        ----------
        truth : GroundTruth, str or Path
            The ground truth, or a file `GroundTruth.load` reads.
        n_relevant : int or None, default None
            True top sources that count as relevant per target; None: 5, or fewer when the truth ranks
            fewer candidate sources among these models (`evaluation.relevant_for`, the CLI's default too).
        models : sequence of str or None, default None
            Restrict the evaluation to these models (their labels must be unique); None: all.

        Returns
        -------
        Evaluation
            Curves, per-target details and ρ per estimator; also kept in `evaluation_`.

        Raises
        ------
        ModelspaceError
            The space is not fitted yet.
        InputError
            A model in `models` that is not in the space, or a truth that matches too few of the models.
        """
        self._check_fitted()
        truth = truth if isinstance(truth, GroundTruth) else GroundTruth.load(truth)
        if models is not None:
            models = [normalise_name(n) if isinstance(n, str) else n for n in models]
        if models is not None and set(models) - set(self.members_):
            raise InputError(f"models not in this space: {', '.join(sorted(set(models) - set(self.members_)))}")
        matrices = {}
        for method_id, result in self.results_.items():
            keep = [i for i, n in enumerate(result.names) if models is None or n in models]
            matrices[method_id] = (result.affinity[np.ix_(keep, keep)], [result.labels[i] for i in keep])
        labels = [m.spec.label for n, m in self.members_.items() if models is None or n in models]
        self.evaluation_ = evaluate_matrices(matrices, truth, relevant_for(truth, labels, n_relevant),
                                             hint=" (pass models=[...] to evaluate a subset)")
        self.truth_ = truth  # the page shows its tree beside the estimated ones
        return self.evaluation_

    def save(self, out: str | Path, grid_images: int = 6, grid_models: int = 12, report: bool = True,
             command: str | None = None, summary_estimator: str | None = None) -> Path:
        """Write the output folder, as `modelspace run` does (see `results`).

        The folder holds matrices (CSV), rankings (JSON), trees (Newick + PNG), heatmaps, the attribution
        grids, `results.json` (settings, failures, any evaluation and label scores), ``label_scores.json``
        after `score_with_labels`, and with `report` the page ``report.html`` (`report`), all in one
        commit: a previous run's files there that this one does not write are removed, and a stop at any
        moment leaves one run's results (`results.save`).

        Parameters
        ----------
        out : str or Path
            The output folder.
        grid_images : int, default 6
            Probe images of each method's attribution grid.
        grid_models : int, default 12
            Models of each method's attribution grid.
        report : bool, default True
            Write ``report.html``.
        command : str, optional
            How the results were made, shown on the page (the CLI gives its command line).
        summary_estimator : str, optional
            The estimator whose sources the page's summary names; None: the best by P@5 after
            `evaluate`, else `DEFAULT_ESTIMATOR` when computed, else the first.

        Returns
        -------
        Path
            The output folder.

        Raises
        ------
        ModelspaceError
            The space is not fitted yet.
        """
        self._check_fitted()
        grids = {r.id: self.grid(r.id, grid_images, grid_models)
                 for r in self.results_.values() if r.kind == "method" and r.names}
        files = {}
        if getattr(self, "label_scores_", None) is not None:  # the scores alone, as results.json holds them
            text = json.dumps(self.label_scores_, indent=2) + "\n"
            files[results.LABEL_SCORES_JSON] = lambda path: path.write_text(text, encoding="utf-8")
        if report:
            files[results.REPORT_HTML] = lambda path: self._write_report(path, command, summary_estimator)
        return results.save(out, self.results_, self.summary(), grids, getattr(self, "evaluation_", None), files,
                            truth=getattr(self, "truth_", None))

    def _write_report(self, path: Path, command: str | None, summary_estimator: str | None) -> Path:
        from .report import from_space, write_report  # the page's figures are imported only to draw them

        truth = getattr(self, "truth_", None)
        data = from_space(self, truth=truth)
        if command is not None:
            data.settings["command"] = command
        if summary_estimator is None and truth is None:
            # No ground truth to pick the best: lead with the default estimator when it was computed. The
            # page leads with its first ranked estimator by itself (and says so), so it is named only
            # when it is another one.
            result = self.results_.get(DEFAULT_ESTIMATOR)
            first = next((v for v in data.estimators if v.ranking), None)
            if result is not None and (first is None or first.id != result.id):
                summary_estimator = result.id
        return write_report(data, path, progress=self.progress, summary_estimator=summary_estimator)

    def grid(self, method: str, n_images: int = 6, n_models: int = 12) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The first probe images and the maps of models spread along the method's tree: an attribution grid.

        Parameters
        ----------
        method : str
            A computed method's id, name or alias.
        n_images : int, default 6
            Probe images (at most the probe set's).
        n_models : int, default 12
            Models, at most, spread along the method's tree (`similarity.spread`).

        Returns
        -------
        images : np.ndarray
            The first probe images, (n, 3, S, S) in [0, 1].
        maps : dict of str to np.ndarray
            Model name -> its maps of those images, as `maps` gives them.

        Raises
        ------
        ModelspaceError
            The space is not fitted yet.
        InputError
            No computed method of that name.
        """
        self._check_fitted()
        n_images = min(n_images, len(self.probe_))  # the probe set may be smaller than the grid
        result = self.results_[self._method_id(method)]
        maps = self.maps(result.id, n_images)
        shown = spread(result.names, result.linkage, n_models)
        return self.probe_.batch(0, n_images).numpy(), {n: maps[n] for n in shown}

    def maps(self, method: str, n_images: int | None = None) -> dict[str, np.ndarray]:
        """Stored maps (L2-normalised, at probe size) of the first `n_images` probe images per model.

        Parameters
        ----------
        method : str
            A computed method's id, name or alias.
        n_images : int or None, default None
            Probe images (at most the probe set's); None: all.

        Returns
        -------
        dict of str to np.ndarray
            Model name -> (n, C, S, S) maps, C = 3 (1 after a channel mean; K·C for a method with K
            directions), for the models in the method's results.

        Raises
        ------
        ModelspaceError
            The space is not fitted yet.
        InputError
            No computed method of that name.
        """
        self._check_fitted()
        method_id = self._method_id(method)
        n = len(self.probe_) if n_images is None else min(n_images, len(self.probe_))
        shape = (n, -1, self.probe_.size, self.probe_.size)
        return {
            name: self.store_.read(self.members_[name].entries[method_id], 0, n).reshape(shape)
            for name in self.results_[method_id].names
        }

    def summary(self) -> dict:
        """Settings and results as a JSON-able dict (what `results.json` holds).

        Returns
        -------
        dict
            Versions, the probe set, the estimators, the models, the failures, the work done, any
            evaluation and any label scores.

        Raises
        ------
        ModelspaceError
            The space is not fitted yet.
        """
        self._check_fitted()
        return {
            "modelspace_version": __version__,
            "torch_version": torch.__version__,
            "probe": {"hash": self.probe_.hash, "n_images": len(self.probe_), "size": self.probe_.size,
                      "n_skipped": len(self.probe_.skipped),
                      "skipped": [{"path": p, "reason": r} for p, r in self.probe_.skipped]},
            "methods": [m.id for m in self.methods_],
            "sketch": self.sketch,
            "baselines": [b.id for b in self.baselines_],
            "fusions": [b.id for b in self.baselines_ if b.combines_estimators],
            "not_computed": dict(self.not_computed_),
            "models": [{"name": n, "task": m.spec.label, "key": m.key, "source": m.spec.source,
                        "preprocessing": m.preprocessing} for n, m in self.members_.items()],
            "failures": [f.to_dict() for f in self.failures_],
            "work": dict(getattr(self, "work_", {})),
            "evaluation": self.evaluation_.to_dict() if getattr(self, "evaluation_", None) else None,
            **({"labels": self.label_info_, "label_scores": self.label_scores_} if hasattr(self, "label_info_") else {}),
        }

    # ------------------------------------------------------------------ steps

    def _embed(self, model: ModelSpec | LoadedModel) -> None:
        """Load one model and compute whatever maps of it the store lacks."""
        name = self._check_new(model)
        spec = model if isinstance(model, ModelSpec) else None
        if spec is not None and self._failed_to_load_before(spec):
            return
        try:
            loaded = model if isinstance(model, LoadedModel) else load_model(model, self.runtime.device)
        except ModelspaceError as exc:
            self._load_failed(name, spec, exc, load_repeatable(exc))
            return
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - e.g. SystemExit from a constructor that parses argv
            self._load_failed(name, spec, _wrapped(name, "failed while loading", exc), load_repeatable(exc))
            return
        self.runtime.prepare(loaded.module)
        failed: set[str] = set()
        try:
            for group, units in self._admit(loaded):
                try:
                    written = self.executor.run(loaded, group, self.store_.missing(units), self.probe_, self.store_,
                                                self.runtime, self.progress)
                    self.work_["computed"] += len(written)
                    self.work_["reused"] += len(units) - len(written)
                except (StorageError, ModelRemovedError, KeyboardInterrupt):
                    raise  # the store, not this model: every later model would fail alike (kept work stays)
                except BaseException as exc:  # noqa: BLE001 - one model crashing (input too small, sys.exit ...) must not end the run
                    self._group_failed(loaded, group, _run_error(loaded, exc), _repeatable(exc))
                    failed.update(m.id for m in group)
            self._settle(loaded, failed, self._prepare_baselines(loaded))
        except ModelRemovedError as exc:
            self._removed(name, exc)

    def _embed_ray(self, models: list) -> None:
        """Every model on a Ray cluster, one actor each; this process commits what they compute."""
        names = [self._check_new(m) for m in models]
        if len(set(names)) != len(names):
            raise InputError(f"models: names repeated: {sorted({n for n in names if names.count(n) > 1})}")
        models = [m for m in models if not (isinstance(m, ModelSpec) and self._failed_to_load_before(m))]
        names = [m.spec.name if isinstance(m, LoadedModel) else m.name for m in models]
        self._ray_specs = {m.name: m for m in models if isinstance(m, ModelSpec)}
        before = list(self.members_)
        job = _RayJob(admit=self._admit, failed=self._ray_failed, settle=self._settle, counted=self._counted,
                      stored=self._stored_baselines, prepared=self._prepared_baselines)
        self.placements_ += self.executor.run(models, self.probe_, self.store_, job, self.runtime, self.progress)
        # Models finish in any order on a cluster; the space keeps the order they were given in.
        self.members_ = {n: self.members_[n] for n in before + names if n in self.members_}

    def _ray_failed(self, name: str, methods: list | None, error: Exception, remember: bool,
                    loaded: LoadedModel | None) -> None:
        """A failure a Ray run reports: to load (``methods`` None), of baselines (their ids), or of methods."""
        if isinstance(error, ModelRemovedError):
            self._removed(name, error)
        elif methods is None:
            self._load_failed(name, getattr(self, "_ray_specs", {}).get(name), error, remember)
        elif all(isinstance(m, str) for m in methods):  # "baselines", or a baseline's id
            for what in methods:
                self._fail(name, what, error)
        else:
            self._group_failed(loaded, methods, error, remember)

    def _counted(self, computed: int, reused: int) -> None:
        self.work_["computed"] += computed
        self.work_["reused"] += reused

    def _check_new(self, model: ModelSpec | LoadedModel) -> str:
        """The name of a model about to join the space; its failures of an earlier `add` are forgotten.

        InputError for a non-model or a name already in the space.
        """
        name = model.spec.name if isinstance(model, LoadedModel) else getattr(model, "name", None)
        if not isinstance(model, (ModelSpec, LoadedModel)):
            raise InputError(f"models must be ModelSpec or LoadedModel objects, got {type(model).__name__}")
        if name in self.members_:
            raise InputError(f"model {name!r} is already in this space")
        self.failures_ = [f for f in self.failures_ if f.model != name]
        return name

    def _failed_to_load_before(self, spec: ModelSpec) -> bool:
        """Whether the store records that this zoo entry's model failed to load.

        It is reported again as skipped, unless `retry_failed` is set, which forgets the record instead.
        """
        key = spec_key(spec)
        reason = self.store_.load_failure(key)
        if reason is None:
            return False
        if self.retry_failed:
            self.store_.clear_load_failure(key)
            return False
        self._fail(spec.name, None, f"skipped, failed before: {reason}")
        return True

    def _removed(self, name: str, error: ModelRemovedError) -> None:
        """A model removed from the store by another process while it was computed.

        A failure of the whole model (its maps are not all there), never remembered in the store, said once.
        """
        self.members_.pop(name, None)
        self._fail(name, None, error, stage="computing")

    def _load_failed(self, name: str, spec: ModelSpec | None, error: Exception, remember: bool) -> None:
        """Record a model that failed to load.

        In the store too, under its zoo entry, when ``remember`` (loading it again would fail alike,
        `load_repeatable`).
        """
        if spec is not None and remember:
            self.store_.put_load_failure(spec_key(spec), name, str(error))
        self._fail(name, None, error)

    def _admit(self, loaded: LoadedModel) -> list[tuple[list[AttributionMethod], list]]:
        """Register a loaded model and plan its work: ``[(methods sharing a backward pass, their units)]``.

        ``loaded`` needs no module (a Ray worker's record of the model it loaded has none).
        """
        name = loaded.name
        self.store_.register_model(loaded.key, name, {**loaded.spec.to_dict(), "preprocessing": loaded.preprocessing})
        keys = self._keys(loaded)
        if name in self._recompute:  # its code changed under the same key: drop what the old code computed
            for key in [*keys.values(), *self._baseline_keys(loaded).values()]:
                self.store_.remove_entry(key)
        return [(group, [u for m in group for u in self.store_.plan(keys[m.id], name, len(self.probe_), self.executor.shard_size)])
                for group in backward_groups(self._not_failed_before(name, keys))]

    def _keys(self, loaded: LoadedModel) -> dict[str, EntryKey]:
        return {m.id: EntryKey(loaded.key, self.probe_.hash, m.ident.at(self.runtime.precision).store_key,
                               self.probe_.size) for m in self.methods_}

    def _baseline_keys(self, loaded: LoadedModel) -> dict[str, EntryKey]:
        """The store keys of a model's prepared baseline forms, by baseline id (fusions prepare nothing)."""
        return {b.id: EntryKey(loaded.key, self.probe_.hash, b.ident.at(self.runtime.precision).prepared_key,
                               self.probe_.size) for b in self.baselines_ if not b.combines_estimators}

    def _group_failed(self, loaded: LoadedModel, group: Sequence[AttributionMethod], error: Exception,
                      remember: bool) -> None:
        """Record the failure of a group of methods of a model (in the store too when it would happen again)."""
        keys = self._keys(loaded)
        for method in group:
            self._fail(loaded.name, method.id, error, keys[method.id] if remember else None)

    def _settle(self, loaded: LoadedModel, failed: set[str], prepared: dict[str, Prepared]) -> None:
        """A model whose work is done joins the space with the methods whose maps are whole and healthy."""
        keys, entries = self._keys(loaded), {}
        done = [m for g in backward_groups(self.methods_) for m in g if m.id not in failed]
        for method in done:
            if self.store_.failure(keys[method.id]) is not None:
                continue  # skipped: failed before (already reported by `_not_failed_before`)
            if not self.store_.is_complete(keys[method.id], len(self.probe_)):
                continue  # its work was interrupted (a failure recorded elsewhere)
            health = self.store_.health(keys[method.id])
            if health["n_zero"] or health["n_nonfinite"]:
                self._fail(loaded.name, method.id, _degenerate_message(loaded.name, method.id, health, len(self.probe_)),
                           keys[method.id])
            else:
                entries[method.id] = keys[method.id]
        self.members_[loaded.name] = _Member(loaded.spec, loaded.key, entries, prepared, loaded.preprocessing)

    def _not_failed_before(self, name: str, keys: dict[str, EntryKey]) -> list[AttributionMethod]:
        """The methods to run for a model.

        Those the store records as failed are skipped (and reported again) unless `retry_failed` is set,
        which forgets the record instead.
        """
        todo = []
        for method in self.methods_:
            reason = self.store_.failure(keys[method.id])
            if reason is not None and self.retry_failed:
                self.store_.clear_failure(keys[method.id])
            elif reason is not None:
                self._fail(name, method.id, f"skipped, failed before: {reason}")
                continue
            todo.append(method)
        return todo

    def _prepare_baselines(self, loaded: LoadedModel) -> dict[str, Prepared]:
        """Encoder activations on the probe set, in each baseline's compact prepared form.

        From the store, else computed (one forward pass for all the baselines that lack theirs) and stored.
        """
        found, todo = self._stored_baselines(loaded)
        if todo:
            found.update(self._prepared_baselines(
                loaded, *prepare_baselines(loaded, todo, self.probe_, self.runtime)))
        return found

    def _stored_baselines(self, loaded: LoadedModel) -> tuple[dict[str, Prepared], list[Similarity]]:
        """A model's prepared baseline forms found in the store, and the baselines still to prepare.

        Those recorded as failed before are reported and skipped, unless `retry_failed`.
        """
        keys = self._baseline_keys(loaded)
        found, todo = {}, []
        for baseline in (b for b in self.baselines_ if b.id in keys):
            key = keys[baseline.id]
            reason = self.store_.failure(key)
            if reason is not None and not self.retry_failed:
                self._fail(loaded.name, baseline.id, f"skipped, failed before: {reason}")
                continue
            if reason is not None:
                self.store_.clear_failure(key)
            arrays = self.store_.get_prepared(key)
            try:
                if arrays is not None:
                    found[baseline.id] = baseline.unpack(arrays, loaded.name)
                    continue
            except InputError as exc:
                _log.warning("model %r: its stored %s form is unreadable (%s); it is computed again", loaded.name,
                             baseline.id, exc)
            todo.append(baseline)
        if found and not todo:
            self.work_["activations_reused"] += 1
        return found, todo

    def _prepared_baselines(self, loaded: LoadedModel, prepared: dict[str, Prepared],
                            errors: list[tuple[str, Exception]]) -> dict[str, Prepared]:
        """Record what `prepare_baselines` gave for a model (here or on a Ray worker).

        Its forms are stored, its errors recorded (a baseline's refusal of the activations in the store
        too: it would recur).
        """
        keys = self._baseline_keys(loaded)
        self.work_["activations_computed"] += 1
        for what, exc in errors:
            self._fail(loaded.name, what, exc, keys.get(what))
        for baseline in self.baselines_:
            arrays = baseline.pack(prepared[baseline.id]) if baseline.id in prepared else None
            if arrays is not None:
                self.store_.put_prepared(keys[baseline.id], arrays)
        return prepared

    def _assemble(self) -> None:
        """Affinities from the store's pair cache; only missing pairs are computed (one row per new model)."""
        # Found by id, name or alias, as `maps` finds them: one resolver (`_method_id`) for both.
        self.results_: dict[str, MethodResult] = Keyed(what="estimator ids", resolve=self._method_id,
                                                       hint=self._not_computed_hint())
        for method in self.methods_:
            members = [(n, m) for n, m in self.members_.items() if method.id in m.entries]
            keys = [m.entries[method.id] for _, m in members]
            matrix = self._affinity(keys, [n for n, _ in members], method.directions)
            self.results_[method.id] = self._result(method.id, members, matrix, "method")
        for baseline in self.baselines_:
            if baseline.combines_estimators:
                continue  # fused below, once every member's matrix is known
            members = [(n, m) for n, m in self.members_.items() if baseline.id in m.prepared]
            if baseline.uses_affinity:  # e.g. DEPARA: a model whose maps failed has no node term
                node = self.results_[self._method_id(baseline.method)]
                members = [(n, m) for n, m in members if n in node.names]
            matrix = compare_all(baseline, [m.prepared[baseline.id] for _, m in members])
            if baseline.uses_affinity:
                rows = [node.names.index(n) for n, _ in members]
                matrix = baseline.combine(node.affinity[np.ix_(rows, rows)], matrix)
            self.results_[baseline.id] = self._result(baseline.id, members, matrix, "baseline")
        for fusion in (b for b in self.baselines_ if b.combines_estimators):
            parts = [self.results_[get_estimator_id(m)] for m in fusion.members]
            # a model a member failed on is left out of the fusion, not given a rank it never had
            names = [n for n in parts[0].names if all(n in p.names for p in parts)]
            matrices = [p.affinity[np.ix_(*[[p.names.index(n) for n in names]] * 2)] for p in parts]
            self.results_[fusion.id] = self._result(fusion.id, [(n, self.members_[n]) for n in names],
                                                    fusion.fuse(matrices), "fusion")

    def _judge(self) -> None:
        """A `confidence` per target on every result (`similarity.confidence`), or a `confidence_note`.

        A method's halves come from the store's pair cache (`_method_halves`); a baseline's from its
        prepared forms restricted to each half (`compare_halves`); a fusion's from its members'.
        """
        note = too_few_images(len(self.probe_), len(self.probe_.copies))
        k = confidence_k(len(self.members_))
        if note is None and k < 1:
            note = f"confidence: not given: {len(self.members_)} models, fewer than the 3 a top-K needs"
        if note is not None:
            for r in self.results_.values():
                r.confidence, r.confidence_note = None, note
            return
        masks = half_masks(len(self.probe_))
        halves: dict[str, np.ndarray | None] = {}
        why: dict[str, str] = {}
        for method in self.methods_:
            r = self.results_[method.id]
            halves[method.id] = self._method_halves(method, r.names, masks) if len(r.names) >= 2 else None
        for baseline in sorted(self.baselines_, key=lambda b: b.combines_estimators):  # fusions after their members
            r = self.results_[baseline.id]
            if baseline.combines_estimators:  # a fusion on a half fuses its members on that half
                parts = [self.results_[get_estimator_id(m)] for m in baseline.members]
                if any(halves.get(p.id) is None for p in parts):
                    why[baseline.id] = "a member of the fusion cannot be recomputed on a half of the probe images"
                    halves[baseline.id] = None
                    continue
                picks = [[p.names.index(n) for n in r.names] for p in parts]
                halves[baseline.id] = np.stack([baseline.fuse([halves[p.id][b][np.ix_(i, i)] for p, i in zip(parts, picks)])
                                                for b in range(len(masks))])
                continue
            got = compare_halves(baseline, [self.members_[n].prepared[baseline.id] for n in r.names], masks)
            if got is None:
                why[baseline.id] = f"{baseline.name} cannot be recomputed on a half of the probe images"
            elif baseline.uses_affinity:  # the node term on a half is its method's half affinity
                node = self.results_[self._method_id(baseline.method)]
                rows = [node.names.index(n) for n in r.names]
                node_halves = halves.get(node.id)
                got = None if node_halves is None else np.stack(
                    [baseline.combine(h[np.ix_(rows, rows)], g) for h, g in zip(node_halves, got)])
            halves[baseline.id] = got
        estimates = [Estimate(e, r.kind, r.names, r.affinity, halves.get(e),
                              why.get(e, f"{e} ({r.kind}) is not recomputed on halves"))
                     for e, r in self.results_.items() if len(r.names) >= 2]
        judged = judge(estimates, k)
        for e, r in self.results_.items():
            found = judged.get(e) or {}
            r.confidence = {t: c.to_dict() for t, c in found.items()} or None
            r.confidence_note = "" if found else (
                f"confidence: not given: {e} has neither halves nor an estimator of the other kind to agree with"
                if len(r.names) > k else f"confidence: not given: {len(r.names)} models, fewer than K + 1 = {k + 1}")

    def _put_halves(self, pairs: Iterable[tuple[EntryKey, EntryKey, np.ndarray]]) -> None:
        """Cache pairs' half affinities (B values each) in the store's pair cache, under `half_key`s."""
        self.store_.put_affinities((half_key(a, b, len(values), CONFIDENCE_SEED),
                                    half_key(c, b, len(values), CONFIDENCE_SEED), float(v))
                                   for a, c, values in pairs for b, v in enumerate(values))

    def _method_halves(self, method: AttributionMethod, names: list[str], masks: np.ndarray) -> np.ndarray:
        """(B, N, N): a method's affinity on each half.

        From the store's pair cache when every pair of every half is there (a rerun reads no map), else
        streamed in one pass over the maps and cached (the affinity's own pass caches them, a whole
        matrix or a new model's row, so this pass only runs for pairs cached before halves were).
        Sketched methods read sketches.
        """
        keys = [self.members_[n].entries[method.id] for n in names]
        n = len(keys)
        if self.sketch is None or method.directions > 1:
            cached = np.ones((len(masks), n, n))
            complete = True
            for b in range(len(masks)):
                found = self.store_.affinities_among([half_key(k, b, len(masks), CONFIDENCE_SEED) for k in keys])
                complete = complete and len(found) == n * (n - 1) // 2
                if not complete:
                    break
                for (i, j), value in found.items():
                    cached[b, i, j] = cached[b, j, i] = value
            if complete:
                return cached
        if self.sketch is not None and method.directions == 1:
            sketches = [self.store_.get_sketch(k, self.sketch, SKETCH_SEED) for k in keys]
            readers = [lambda s, e, x=x: x[s:e] for x in sketches]
        else:
            readers = [lambda s, e, k=k: self.store_.read(k, s, e) for k in keys]
        _, halves = affinity_halves(readers, len(self.probe_), names, masks, progress=self.progress,
                                    directions=method.directions)
        if self.sketch is None or method.directions > 1:
            self._put_halves((keys[i], keys[j], halves[:, i, j]) for i in range(n) for j in range(i + 1, n))
        return halves

    def _result(self, estimator: str, members: list[tuple[str, _Member]], matrix: np.ndarray,
                kind: str) -> MethodResult:
        names = [n for n, _ in members]
        linkage = similarity_tree(matrix, self.linkage) if len(names) >= 2 else None
        ranking = rank_sources(matrix, names) if len(names) >= 2 else {}
        return MethodResult(estimator, names, [m.spec.label for _, m in members], matrix, linkage, ranking, kind)

    def _affinity(self, keys: list[EntryKey], names: list[str], directions: int = 1) -> np.ndarray:
        if self.sketch is not None and directions == 1:  # a sketch keeps cosines only: K maps are compared exactly
            return self._sketched_affinity(keys, names)
        n, n_images = len(keys), len(self.probe_)
        a = np.eye(n)
        known = np.eye(n, dtype=bool)
        for (i, j), value in self.store_.affinities_among(keys).items():
            a[i, j] = a[j, i] = value
            known[i, j] = known[j, i] = True
        readers = [lambda s, e, k=k: self.store_.read(k, s, e) for k in keys]
        # the confidence's halves (`_method_halves`) come with the same pass, when there will be one
        masks = half_masks(n_images) if too_few_images(n_images, len(self.probe_.copies)) is None and n >= 3 else None
        if n >= 2 and not known[~np.eye(n, dtype=bool)].any():
            if masks is not None:
                a, halves = affinity_halves(readers, n_images, names, masks, progress=self.progress,
                                            directions=directions)
                self._put_halves((keys[i], keys[j], halves[:, i, j]) for i in range(n) for j in range(i + 1, n))
            else:
                a = affinity_matrix(readers, n_images, names, progress=self.progress, directions=directions)
            self.store_.put_affinities((keys[i], keys[j], float(a[i, j])) for i in range(n) for j in range(i + 1, n))
            return a
        # Each model with unknown pairs gets one row against them, the newest (most unknown) first,
        # so that adding one model costs exactly one row.
        for i in sorted(range(n), key=lambda i: -int((~known[i]).sum())):
            todo = [j for j in range(n) if not known[i, j]]
            if not todo:
                continue
            args = (readers[i], [readers[j] for j in todo], n_images, [names[i]] + [names[j] for j in todo])
            if masks is not None:
                row, halves = affinity_halves_row(*args, masks, progress=self.progress, directions=directions)
                self._put_halves((keys[i], keys[j], halves[:, t]) for t, j in enumerate(todo))
            else:
                row = affinity_row(*args, progress=self.progress, directions=directions)
            for j, value in zip(todo, row):
                a[i, j] = a[j, i] = value
                known[i, j] = known[j, i] = True
            self.store_.put_affinities((keys[i], keys[j], float(a[i, j])) for j in todo)
        return a

    def _sketched_affinity(self, keys: list[EntryKey], names: list[str]) -> np.ndarray:
        """Affinities from stored sketches; a model without one is sketched from its maps once."""
        sketcher = MapSketcher(dim=self.sketch, seed=SKETCH_SEED)
        sketches = []
        for key in keys:
            sketch = self.store_.get_sketch(key, self.sketch, SKETCH_SEED)
            if sketch is None:
                sketch = sketcher.sketch(lambda s, e, k=key: self.store_.read(k, s, e), len(self.probe_))
                self.store_.put_sketch(key, self.sketch, SKETCH_SEED, sketch)
            sketches.append(sketch)
        return sketched_affinity(sketches, names) if keys else np.zeros((0, 0))

    # ------------------------------------------------------------------ helpers

    def _fail(self, name: str, method: str | None, exc: Exception | str, remember: EntryKey | None = None,
              stage: str = "loading") -> None:
        """Record a failure (and, with `remember`, keep it in the store for later fits), or raise it.

        A failure of no one method (``method`` None) happened while ``stage``.
        """
        if remember is not None:
            self.store_.put_failure(remember, str(exc))
        if self.on_error == "raise":
            raise exc if isinstance(exc, Exception) else ModelspaceError(exc)
        self.failures_.append(Failure(name, method, str(exc)))
        # Once per failure, naming the model once (most messages already start with it).
        text = str(exc) if repr(name) in str(exc) else f"model {name!r}: {exc}"
        _log.warning("%s [%s]", text, method or stage)

    def _validate(self) -> None:
        if not isinstance(self.runtime, Runtime):
            raise InputError(f"runtime: expected a Runtime, got {self.runtime!r}")
        if not isinstance(self.executor, tuple(EXECUTORS.values())):
            raise InputError(f"executor: expected {' or '.join(c.__name__ for c in EXECUTORS.values())}, "
                             f"got {self.executor!r}")
        check_int(self.sketch, "sketch", optional=True)
        if isinstance(self.executor, RayExecutor):
            from .maps.execution.ray import import_ray

            import_ray()  # a clear error naming the extra before any work
            self.executor.check_runtime(self.runtime)
        if self.on_error not in ("record", "raise"):
            raise InputError(f"on_error must be 'record' or 'raise', got {self.on_error!r}")
        if isinstance(self.recompute, str) or not all(isinstance(n, str) for n in self.recompute):
            raise InputError(f"recompute: expected a list of model names, got {self.recompute!r}")
        if self.methods is not None and (isinstance(self.methods, (str, AttributionMethod)) or not self.methods):
            raise InputError("methods must be a non-empty list of method names, or None for the defaults")
        if isinstance(self.baselines, (str, Similarity)):
            raise InputError("baselines must be a list of baseline names, or None for the defaults")
        self._estimators()  # a bad name or combination fails before the probe folder is read

    def _estimators(self) -> tuple[list[AttributionMethod], list[Similarity]]:
        """The methods and baselines to compute, the defaults resolved (`default_estimators`), checked together."""
        methods = list(DEFAULT_METHODS if self.methods is None else self.methods)
        extra_methods, extra_baselines = default_estimators(methods, add_methods=self.methods is None)
        methods = [get_method(m) for m in [*methods, *extra_methods]]
        baselines = [get_baseline(b) for b in (extra_baselines if self.baselines is None else self.baselines)]
        ids = [m.id for m in methods] + [b.id for b in baselines]
        names = {m.name for m in methods}
        for baseline in baselines:
            if baseline.uses_affinity and baseline.method not in names:
                raise InputError(f"baselines: {baseline.id} needs the maps of method {baseline.method!r}; "
                                 f"add it to methods (methods: {', '.join(sorted(names))})")
            if baseline.combines_estimators:
                missing = [m for m in baseline.members if get_estimator_id(m) not in ids]
                if missing:
                    raise InputError(f"baselines: {baseline.id} fuses {', '.join(map(repr, missing))}, which this "
                                     "space does not compute; add them to methods or baselines")
        if len(set(ids)) != len(ids):
            raise InputError(f"methods or baselines are repeated: {ids}")
        return methods, baselines

    def _defined(self, baselines: list[Similarity]) -> tuple[list[Similarity], dict[str, str]]:
        """The baselines the probe set defines, and why each other one is not computed.

        Not computed: undefined on these images whatever the models (`Similarity.undefined_on`), or a
        fusion of such a baseline. Each is said once on stderr; no model runs for it, and none is
        recorded as failing it.
        """
        copies = self.probe_.copies
        why = {b.id: b.undefined_on(copies) for b in baselines if not b.combines_estimators}
        for fusion in (b for b in baselines if b.combines_estimators):
            left = [m for m in fusion.members if why.get(get_estimator_id(m))]
            why[fusion.id] = (f"it fuses {', '.join(left)}, which {'is' if len(left) == 1 else 'are'} not computed"
                              if left else None)
        not_computed = {b.id: why[b.id] for b in baselines if why[b.id]}
        for estimator, reason in not_computed.items():
            _log.warning("%s: not computed: %s", estimator, reason)
        return [b for b in baselines if b.id not in not_computed], not_computed

    def _probe_set(self, probe: ProbeSet | str | Path | Any, models: list) -> ProbeSet:
        """``probe`` as a ProbeSet: as is, a folder or ``.npz`` path (as the CLI reads them), or an array."""
        if isinstance(probe, ProbeSet):
            return probe
        if isinstance(probe, (str, os.PathLike)):
            path = Path(probe)
            if path.suffix == ".npz":
                return ProbeSet.load(path)
            specs = [m.spec if isinstance(m, LoadedModel) else m for m in models if isinstance(m, (ModelSpec, LoadedModel))]
            return ProbeSet.from_folder(path, size=probe_size_for(specs) if specs else PROBE_SIZE_CAP,
                                        progress=self.progress)
        return ProbeSet.from_array(probe)

    def _open_store(self) -> MapStore:
        if isinstance(self.store, MapStore):
            return self.store
        if self.store is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="modelspace-store-")
            return MapStore(self._tmp.name)
        return MapStore(self.store)

    def _not_computed_hint(self) -> str:
        """What a lookup of an estimator that is not among the results adds: those not computed, and why."""
        return "".join(f"; {e} is not computed: {r}" for e, r in self.not_computed_.items())

    def _check_fitted(self, assembled: bool = True) -> None:
        if not hasattr(self, "results_" if assembled else "members_"):
            raise ModelspaceError("this ModelSpace is not fitted yet: call fit(models, probe) first")

    def _method_id(self, method: str) -> str:
        """The id of the computed estimator ``method`` names; the first computed one of that name.

        ``method`` is an id, a name or an alias ("lrp", "lrp_epsilon", "lrp_epsilon(epsilon=1e-06)", "cka").
        """
        if dict.__contains__(self.results_, method):
            return method
        found = None
        if isinstance(method, (str, Declared)):  # an estimator object is found by its id, as its name is
            found = find(str(getattr(method, "id", method)), [e.id for e in [*self.methods_, *self.baselines_]],
                         {**METHODS.aliases, **BASELINES.aliases})
        if found is None:
            raise InputError(f"method {method!r} was not computed; methods: {', '.join(self.results_)}"
                             + self._not_computed_hint())
        return found


def get_estimator_id(name: str) -> str:
    """The canonical id of an estimator named by name, alias or id: a method's, else a baseline's.

    Parameters
    ----------
    name : str
        A method's or baseline's name, alias or id.

    Returns
    -------
    str
        Its canonical id.

    Raises
    ------
    InputError
        Neither a method nor a baseline of that name.
    """
    try:
        return get_method(name).id
    except InputError:
        return get_baseline(name).id


def _label_counts(labels: Sequence[Any]) -> dict:
    """The labelled images' counts: images, classes and images per class (no classes for float targets)."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or np.issubdtype(arr.dtype, np.floating):
        return {"n_images": len(arr), "n_classes": None, "per_class": None}
    counts = np.unique(arr, return_counts=True)[1]
    return {"n_images": len(arr), "n_classes": len(counts),
            "per_class": {"min": int(counts.min()), "max": int(counts.max())}}


def default_estimators(methods: Sequence[str | AttributionMethod], estimator: str = DEFAULT_ESTIMATOR,
                       n_images: int | None = None, add_methods: bool = True) -> tuple[list[str], list[str]]:
    """What a run computes beside `methods` so that `estimator` is among its results.

    An attribution method is added to the methods unless it is there (and only with `add_methods`:
    a user who named the methods chose what to pay for); a baseline is added when `methods` and
    `n_images` (the probe set's size, when known) meet its needs; a fusion brings its members. A
    default the user did not ask for is left out rather than failing the run: DEPARA without the
    maps of its node method, DDS on fewer probe images than its debiased estimate needs, a fusion
    with a member left out.

    Parameters
    ----------
    methods : sequence of str or AttributionMethod
        The attribution methods the run computes.
    estimator : str, default DEFAULT_ESTIMATOR
        The estimator to have among the results: a method, a baseline or a fusion.
    n_images : int or None, default None
        The probe set's size, when known.
    add_methods : bool, default True
        Add an attribution method the estimator needs (False: the user chose the methods).

    Returns
    -------
    methods : list of str
        Methods to add.
    baselines : list of str
        Baselines to add (a fusion after its members).

    Raises
    ------
    InputError
        A method in `methods` that is not registered.
    """
    have = {get_method(m).id for m in methods}
    try:
        method = get_method(estimator)
    except InputError:
        method = None
    if method is not None:
        return ([], []) if method.id in have else ([estimator], []) if add_methods else ([], [])
    try:
        baseline = get_baseline(estimator)
    except InputError:
        return [], []
    if baseline.combines_estimators:
        extra_methods, extra_baselines = [], []
        for member in baseline.members:
            got = default_estimators([*methods, *extra_methods], member, n_images, add_methods)
            computed = got != ([], []) or get_estimator_id(member) in {get_method(m).id for m in [*methods, *extra_methods]}
            if not computed:
                return [], []
            extra_methods, extra_baselines = extra_methods + got[0], extra_baselines + got[1]
        return extra_methods, [*extra_baselines, estimator]
    if baseline.uses_affinity and baseline.method not in {get_method(m).name for m in methods}:
        return [], []
    if n_images is not None and n_images < baseline.min_images:
        return [], []
    return [], [estimator]


@dataclass(frozen=True)
class _RayJob:
    """What a Ray run asks of the space (`maps.execution.ray.Job`): the space's own steps, model by model."""

    admit: Any
    failed: Any
    settle: Any
    counted: Any
    stored: Any
    prepared: Any


def _degenerate_message(name: str, method: str, health: dict, n_images: int) -> str:
    parts = []
    if health["n_zero"]:
        parts.append(f"{health['n_zero']} of {n_images} maps are all zero (the encoder output does not depend on the input)")
    if health["n_nonfinite"]:
        parts.append(f"{health['n_nonfinite']} of {n_images} maps are not finite (NaN or Inf in the model)")
    return f"model {name!r}, method {method}: " + "; ".join(parts)
