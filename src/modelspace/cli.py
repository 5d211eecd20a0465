r"""The `modelspace` command: a thin shell over the Python API.

Everything but results goes to stderr, one record per line: every log record and error line has its
control characters escaped (`errors.printable`: a model name holding ANSI sequences or a newline shows
them as ``\x1b`` and ``\n`` and cannot start a line of its own), and so do the names and paths in the
results' text on stdout; ``--json`` escapes them as JSON does.

Exit codes: 0 success (every model × method of `run`, `embed` and `affinity` has its maps),
1 a failure inside the run: some models failed, including those skipped as "failed before" (the
others' results are still written), or a bug (the traceback is printed); 2 bad input (zoo file,
probe folder, ground truth, arguments, a path holding no store for `models`, `remove`, `gc` and
`rebuild`, an ambiguous name for `remove`); 3 the store, the output folder or environment cannot be
used (read-only, disk full, locked, a damaged manifest: the message names the path, and `rebuild`
remakes a damaged manifest from the store's files); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from ._version import __version__
from .attribution import DEFAULT_METHODS, get_method
from .errors import InputError, ModelspaceError, StorageError, printable
from .identity import has_params
from .evaluation import DEFAULT_N_RELEVANT, format_table
from .maps import EXECUTORS, Executor, LocalExecutor, RayExecutor, Runtime
from .options import add_options, from_args
from .results import LABEL_SCORES_JSON, REPORT_HTML, add_files, locked
from .transferability import DEFAULT_SCORES, list_scores

_log = logging.getLogger("modelspace")

#: Where every command that writes a folder writes by default, and (as ``DEFAULT_OUT/store``) the store
#: that every command with ``--store`` uses without it. The demo and the study write into
#: their own subfolders of it, so that they never overwrite a run's results.
DEFAULT_OUT = "modelspace-out"
DEFAULT_STORE = f"{DEFAULT_OUT}/store"
_RERUN_OUT = ("A folder that holds results is written over as one unit: the new files first, then those the previous "
              "run listed in OUT/results.json and this one did not write are removed; nothing else there is touched "
              "(the store, your own files), and two runs into one folder take turns. Rerunning into one folder is the "
              "common case, and resumes from its store")
SKIPPED_SHOWN = 200  # skipped probe files listed on stderr; all of them are in results.json (or the .npz)

EXAMPLES = {
    "run": "modelspace run zoo.toml probe_images/            # → modelspace-out/report.html, maps in modelspace-out/store\n"
           "  modelspace run zoo.yaml probe_images/ --out results/ --truth taskonomy --methods saliency lrp\n"
           "  modelspace run zoo.toml probe_images/ --labels labelled/   # + LogME, H-score, ... per model",
    "probe": "modelspace probe probe_images/ --probe-size 64 --limit 500 --out probe.npz",
    "embed": "modelspace embed zoo.toml probe.npz --store store/ --methods saliency lrp\n"
             "  modelspace embed zoo.toml probe.npz                 # → modelspace-out/store, as `run` would",
    "affinity": "modelspace affinity zoo.toml probe.npz --store store/ --out results/",
    "tree": "modelspace tree results/affinity_saliency.csv --out results/",
    "evaluate": "modelspace evaluate results/affinity_saliency.csv --truth taskonomy --zoo zoo.toml",
    "models": "modelspace models --store store/",
    "remove": "modelspace remove my_model --store store/\n"
              "  modelspace remove 631407ed --store store/       # one of several entries named alike, by key prefix",
    "gc": "modelspace gc --keep-zoo zoo.toml --store store/ --dry-run   # what would go\n"
          "  modelspace gc --keep-zoo zoo.toml --store store/",
    "rebuild": "modelspace rebuild --store store/   # after \"manifest ... is damaged\" (exit 3)",
    "methods": "modelspace methods",
    "report": "modelspace report results/                # → results/report.html\n"
              "  modelspace report results/ --truth truth.csv --out page.html",
    "demo": "modelspace demo                        # → modelspace-out/demo/report.html",
    "study": "modelspace study --n-probe 100          # → modelspace-out/study/",
}


# ---------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    """``modelspace run``: the whole pipeline, maps to the HTML report, and the rankings on stdout.

    The ground truth and the labels are checked before any model runs; the results (and the page, unless
    ``no_report``) are written to ``out`` in one commit, and the rankings, any evaluation and the work done are
    printed (JSON with ``json``).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options of ``modelspace run``: ``zoo``, ``probe`` and the probe folder's options
        (``probe_size``, ``limit``, ``seed``), ``out``, ``truth`` and ``n_relevant``, ``labels`` and
        ``label_scores``, ``no_report``, ``summary_estimator``, ``trust_checkpoints``, ``weights_dir``,
        ``random_weights``, ``store`` (None: ``OUT/store``), ``methods_given``, ``epsilon``, ``sketch``,
        ``retry_failed``, ``recompute``, ``executor``, the runtime's and the executor's options
        (`options.add_options`), ``quiet``, ``json`` and ``argv`` (the command line, shown on the page).

    Returns
    -------
    int
        1 when any model × method failed (or was skipped as failed before), else 0.

    Raises
    ------
    InputError
        A bad zoo file, probe, ground truth, label set or option value; a model that fails does not raise.
        `main` exits 2.
    StorageError
        The store or the output folder cannot be used (read-only, full, locked, a damaged manifest). `main`
        exits 3.
    """
    from .evaluation import GroundTruth, relevant_for

    truth = GroundTruth.load(args.truth) if args.truth else None  # a bad truth fails before any work
    specs = _zoo(args.zoo, args.trust_checkpoints, check=True, weights_dir=args.weights_dir,
                 random_weights=args.random_weights)
    if truth is not None:  # so does a truth that cannot score these models (e.g. too few candidates)
        relevant_for(truth, [spec.label for spec in specs], args.n_relevant)
    labelled = _labelled(args, specs) if args.labels else None  # bad labels fail before any work too
    probe = _probe(args, specs)
    space = _space(args).fit(specs, probe)
    if truth is not None:  # the default n_relevant follows the models that are there (some may have failed)
        space.evaluate(truth, args.n_relevant)
    done = f"wrote {os.path.join(args.out, '')}"  # "results/" as typed, not "results//"
    if labelled is not None:  # scored before saving: results.json holds the scores (and their failures)
        scores = space.score_with_labels(*labelled, scores=args.label_scores)
        done = _label_lines(scores, space.label_info_) + "\n" + done
    space.save(args.out, report=not args.no_report, command="modelspace " + " ".join(args.argv),
               summary_estimator=args.summary_estimator)
    summary = space.summary()
    if not args.no_report:
        page = Path(args.out) / REPORT_HTML
        summary["report"] = str(page)
        done += f"\nreport: {page}"
    _report(args, summary, space, done)
    return _failed(space)


def cmd_report(args: argparse.Namespace) -> int:
    """``modelspace report``: the HTML page of a results folder.

    Written as one of the folder's files (``FOLDER/report.html``, the default) or to the file ``out``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``folder`` (a results folder), ``out`` (None: the folder's own page), ``truth``,
        ``n_relevant``, ``title``, ``summary_estimator``, ``quiet`` and ``json``.

    Returns
    -------
    int
        0 (a failure raises).

    Raises
    ------
    InputError
        A folder that holds no results, or a bad ground truth. `main` exits 2.
    StorageError
        The store or the output folder cannot be used (read-only, full, locked, a damaged manifest). `main`
        exits 3.
    """
    from .report import from_folder, write_report

    with locked(args.folder):  # the folder's own page is added to the run it is drawn from
        data = from_folder(args.folder, truth=args.truth, n_relevant=args.n_relevant, title=args.title)
        page = Path(args.out) if args.out else Path(args.folder) / REPORT_HTML
        write = functools.partial(write_report, data, progress=not args.quiet, summary_estimator=args.summary_estimator,
                                  compare=tuple(args.compare) if args.compare else None)
        if page.resolve() == (Path(args.folder) / REPORT_HTML).resolve():  # the folder's own page: one of its files
            add_files(args.folder, {REPORT_HTML: write})
        else:
            write(page)
    _emit(args, {"report": str(page)}, f"report: {page}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """``modelspace probe``: a folder of images read once into a probe-set file (``.npz``).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``folder``, ``probe_size``, ``limit``, ``seed``, ``out`` (the ``.npz`` file),
        ``quiet`` and ``json``.

    Returns
    -------
    int
        0 (a failure raises).

    Raises
    ------
    InputError
        A folder that is missing or holds no readable image. `main` exits 2.
    StorageError
        The file cannot be written. `main` exits 3.
    """
    probe = _read_probe_folder(args.folder, args.probe_size, args.limit, args.seed, args.quiet)
    probe.save(args.out)
    info = {"out": str(args.out), "n_images": len(probe), "size": probe.size, "hash": probe.hash,
            "skipped": [{"path": p, "reason": r} for p, r in probe.skipped]}
    _emit(args, info, f"{plural(len(probe), 'image')} at {probe.size}×{probe.size} (hash {probe.hash[:12]}), "
                      f"{len(probe.skipped)} skipped → {args.out}" + "".join("\n" + line for line in
                                                                               _skipped_lines(probe.skipped)))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """``modelspace embed``: only the maps, into the store (`ModelSpace.embed`).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``zoo``, ``probe`` and the probe folder's options, ``trust_checkpoints``,
        ``weights_dir``, ``random_weights``, ``store`` (None: ``OUT/store``), ``methods_given``, ``epsilon``,
        ``sketch``, ``retry_failed``, ``recompute``, ``executor``, the runtime's and the executor's options
        (`options.add_options`), ``quiet`` and ``json``.

    Returns
    -------
    int
        1 when any model × method failed (or was skipped as failed before), else 0.

    Raises
    ------
    InputError
        A bad zoo file, probe or option value. `main` exits 2.
    StorageError
        The store or the output folder cannot be used (read-only, full, locked, a damaged manifest). `main`
        exits 3.
    """
    specs = _zoo(args.zoo, args.trust_checkpoints, check=True, weights_dir=args.weights_dir,
                 random_weights=args.random_weights)
    space = _space(args).embed(specs, _probe(args, specs))
    info = {"models": list(space.members_), "failures": [f.to_dict() for f in space.failures_], "work": space.work_,
            "store": args.store}
    _emit(args, info, f"maps of {plural(len(space.members_), 'model')} in {args.store}; "
                      f"{plural(len(space.failures_), 'failure')}; {plural(space.work_['computed'], 'unit')} computed, "
                      f"{space.work_['reused']} found in the store")
    return _failed(space)


def cmd_affinity(args: argparse.Namespace) -> int:
    """``modelspace affinity``: maps, affinities, rankings and trees into ``out``, without the page.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``zoo``, ``probe`` and the probe folder's options, ``out``, ``trust_checkpoints``,
        ``weights_dir``, ``random_weights``, ``store`` (None: ``OUT/store``), ``methods_given``, ``epsilon``,
        ``sketch``, ``retry_failed``, ``recompute``, ``executor``, the runtime's and the executor's options
        (`options.add_options`), ``quiet`` and ``json``.

    Returns
    -------
    int
        1 when any model × method failed (or was skipped as failed before), else 0.

    Raises
    ------
    InputError
        A bad zoo file, probe or option value. `main` exits 2.
    StorageError
        The store or the output folder cannot be used (read-only, full, locked, a damaged manifest). `main`
        exits 3.
    """
    specs = _zoo(args.zoo, args.trust_checkpoints, check=True, weights_dir=args.weights_dir,
                 random_weights=args.random_weights)
    probe = _probe(args, specs)
    space = _space(args).fit(specs, probe)
    space.save(args.out, report=False)  # the page is `run`'s (or `report FOLDER`'s)
    _report(args, space.summary(), space, f"wrote {args.out}")
    return _failed(space)


def cmd_tree(args: argparse.Namespace) -> int:
    """``modelspace tree``: the similarity tree of an affinity CSV, as Newick (printed and written) and a dendrogram.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``affinity`` (an ``affinity_<method>.csv``), ``linkage`` (scipy's method), ``out``
        and ``json``.

    Returns
    -------
    int
        0 (a failure raises).

    Raises
    ------
    InputError
        An unreadable matrix, fewer than two models, or an unknown linkage method. `main` exits 2.
    StorageError
        The output folder cannot be written. `main` exits 3.
    """
    from .report.plots import plot_dendrogram
    from .results import file_name, read_matrix, stem_of
    from .similarity import similarity_tree, to_newick

    matrix, names = read_matrix(args.affinity)
    if len(names) < 2:
        raise InputError(f"{args.affinity}: a tree needs at least two models")
    linkage = similarity_tree(matrix, args.linkage)
    stem = stem_of(args.affinity)
    newick = to_newick(linkage, names)
    # Into a run's folder these replace the run's own tree files (`add_files`); other names stay unlisted.
    add_files(args.out, {file_name("tree", stem): lambda path: path.write_text(newick + "\n"),
                         file_name("dendrogram", stem): functools.partial(plot_dendrogram, linkage, names)},
              list_new=False)
    _emit(args, {"newick": newick}, printable(newick))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``modelspace evaluate``: P@K / R@K of an affinity CSV's rankings against a ground truth.

    The evaluation (JSON) and its curves are written to ``out``; the table is printed.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``affinity``, ``truth`` (`main` sets ``'taskonomy'`` when none is given),
        ``n_relevant``, ``zoo`` (maps model names to task labels), ``out`` and ``json``.

    Returns
    -------
    int
        0 (a failure raises).

    Raises
    ------
    InputError
        An unreadable matrix, zoo file or ground truth, or a truth that cannot score these models. `main` exits
        2.
    StorageError
        The output folder cannot be written. `main` exits 3.
    """
    from .evaluation import Evaluation, GroundTruth, evaluate
    from .report.plots import plot_curves
    from .results import file_name, read_matrix, stem_of
    from .similarity import rank_sources

    matrix, names = read_matrix(args.affinity)
    labels = names
    if args.zoo:
        tasks = {spec.name: spec.label for spec in _zoo(args.zoo)}
        labels = [tasks.get(n, n) for n in names]
    truth = GroundTruth.load(args.truth)
    _n_relevant(args, truth, labels)
    curves, details = evaluate(rank_sources(matrix, labels), truth, args.n_relevant, restrict_to_estimated=True)
    method = stem_of(args.affinity)
    evaluation = Evaluation({method: curves}, len(curves.ks), args.n_relevant, {method: details})
    text = json.dumps(evaluation.to_dict(), indent=1)
    add_files(args.out, {file_name("evaluation", method): lambda path: path.write_text(text),
                         file_name("curves", method): functools.partial(plot_curves, evaluation)}, list_new=False)
    _emit(args, evaluation.to_dict(), format_table(evaluation))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """``modelspace models``: the models of a store, one line each (name, key, source, preprocessing).

    The store is opened read-only; keys no model is registered under are named in a warning.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``store`` (an existing store) and ``json``.

    Returns
    -------
    int
        0 (a failure raises).

    Raises
    ------
    InputError
        A path that holds no store. `main` exits 2.
    StorageError
        The store cannot be read (a damaged manifest). `main` exits 3.
    """
    from .maps import MapStore
    from .models import describe_preprocessing

    with MapStore(args.store, create=False, writes=False) as store:
        models = store.models()
        orphans = store.orphans()
    if orphans:  # not models: nothing lists or reads them, so say that they are there
        _log.warning("store %s holds %s no model is registered under (%s, %s; left by a removal while a run "
                     "computed the model): `modelspace gc --keep-zoo ZOO --store %s` removes them", args.store,
                     plural(len(orphans), "model key"), plural(sum(o["rows"] for o in orphans.values()), "row"),
                     plural(sum(o["files"] for o in orphans.values()), "file"), args.store)
    rows = [(printable(m["name"]), m["model_key"][:12], printable(m["spec"].get("source", "")),
             describe_preprocessing(m["spec"].get("preprocessing"))) for m in models]
    _emit(args, models, "\n".join("\t".join(row) for row in rows) or "(no models)")
    return 0


def _describe_entry(m: dict) -> str:
    """A stored model, to tell apart entries of one name: key, name, first stored, spec summary."""
    spec = m["spec"]
    kwargs = spec.get("kwargs") or {}
    summary = spec.get("source", "") + (f" kwargs {json.dumps(kwargs, sort_keys=True)}" if kwargs else "")
    if spec.get("constructor"):
        summary += f" constructor {spec['constructor']}"
    when = f"first stored {m['first_stored']}" if m.get("first_stored") else "no maps stored"
    return f"{m['model_key']} {m['name']!r}, {when}, {plural(m.get('n_shards', 0), 'shard')}: {summary}"


def cmd_remove(args: argparse.Namespace) -> int:
    """``modelspace remove``: a model's maps and records out of a store.

    A name several stored models share is refused, with each candidate's key.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``name`` (a model name, key or unique key prefix), ``store`` and ``json``.

    Returns
    -------
    int
        0 (a failure raises).

    Raises
    ------
    InputError
        A path that holds no store, or a name that matches no model or several. `main` exits 2.
    StorageError
        The store cannot be written. `main` exits 3.
    """
    from .maps import MapStore
    from .models import normalise_name

    with MapStore(args.store, create=False) as store:
        # as typed (a store of an older modelspace may hold another spelling), else as names are kept
        matches = store.match_models(args.name) or store.match_models(normalise_name(args.name))
        if not matches:
            raise InputError(f"no model named or keyed {args.name!r} in store {args.store} "
                             "(`modelspace models --store ...` lists them)")
        if len(matches) > 1:  # several entries under one name (its spec or weights changed): never guess
            entries = "; ".join(_describe_entry(m) for m in matches)
            raise InputError(f"{args.name!r} names {len(matches)} models in store {args.store}; nothing removed. "
                             f"Pass the key (or a unique prefix of it) of the one to remove, or run "
                             f"`modelspace gc --keep-zoo ZOO` to remove those no zoo entry has any more: {entries}")
        model = matches[0]
        removed = store.remove_model(model["model_key"])
    _emit(args, {"removed": model["name"], "model_key": model["model_key"], "shards": removed},
          f"removed {printable(model['name'])} {model['model_key'][:12]} ({plural(removed, 'shard')})")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """``modelspace gc``: remove from a store every model that is not one of a zoo's current models.

    Every model of the zoo is loaded, weights included, to know its current key; one that cannot load keeps its
    stored entries. Rows and files of keys no model is registered under go too.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``keep_zoo``, ``store``, ``dry_run`` (list, delete nothing), ``trust_checkpoints``
        and ``json``.

    Returns
    -------
    int
        0 (a failure raises).

    Raises
    ------
    InputError
        A bad zoo file, or a path that holds no store. `main` exits 2.
    StorageError
        The store cannot be written. `main` exits 3.
    """
    from .maps import MapStore, kept_torch_state
    from .models import load_model

    specs = _zoo(args.keep_zoo, args.trust_checkpoints)
    with MapStore(args.store, create=False) as store:
        stored = store.models()
        # A model's key covers its resolved spec and its weights hash, so each model is loaded
        # (weights included), as `run` does, to know the key it has now.
        keep, unknown = set(), set()
        for spec in specs:
            try:
                with kept_torch_state():
                    keep.add(load_model(spec).key)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - a model that cannot load: keep what it might own
                unknown.add(spec.name)
                _log.warning("model %r cannot be loaded, so its current key is unknown; its stored entries are "
                             "kept: %s", spec.name, exc)
        stale = [m for m in stored if m["model_key"] not in keep and m["name"] not in unknown]
        removed = {m["model_key"]: 0 if args.dry_run else store.remove_model(m["model_key"]) for m in stale}
        # Rows and files of keys no model is registered under (a removal while a run computed the model)
        orphans = store.orphans() if args.dry_run else store.remove_orphans()
    verb = "would remove" if args.dry_run else "removed"
    lines = [f"{verb} {printable(m['name'])} {m['model_key'][:12]} "
             f"({plural(m['n_shards'] if args.dry_run else removed[m['model_key']], 'shard')})" for m in stale]
    if orphans:
        lines.append(f"{verb} {plural(len(orphans), 'model key')} no model is registered under "
                     f"({plural(sum(o['rows'] for o in orphans.values()), 'row')}, "
                     f"{plural(sum(o['files'] for o in orphans.values()), 'file')})")
    lines.append(f"{verb} {plural(len(stale), 'model')}, kept {len(stored) - len(stale)} of {len(stored)}"
                 + (" (dry run: nothing deleted)" if args.dry_run else ""))
    _emit(args, {"dry_run": args.dry_run, "removed": [{"name": m["name"], "model_key": m["model_key"],
                                                       "shards": m["n_shards"]} for m in stale],
                 "orphans": [{"model_key": k, **o} for k, o in orphans.items()],
                 "kept": len(stored) - len(stale), "unloadable": sorted(unknown)}, "\n".join(lines))
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    """``modelspace rebuild``: a store's manifest made anew from its files (`MapStore.rebuild`).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``store`` and ``json``.

    Returns
    -------
    int
        0 (a failure raises).

    Raises
    ------
    InputError
        A path that holds no store. `main` exits 2.
    StorageError
        The store cannot be written. `main` exits 3.
    """
    from .maps import MapStore

    done = MapStore.rebuild(args.store)
    kept = f"the old manifest is kept as {done['kept']}" if done["kept"] else "there was no manifest"
    sketches = f"{done['sketches']} sketch{'' if done['sketches'] == 1 else 'es'}"
    left = f"; {plural(len(done['left_out']), 'file')} left out (named above), computed again when needed" \
        if done["left_out"] else ""
    _emit(args, done, f"rebuilt the manifest of {done['store']} from its files: {plural(done['models'], 'model')}, "
                      f"{plural(done['shards'], 'shard')}, {sketches}, "
                      f"{plural(done['prepared'], 'prepared form')}; {kept}{left}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    """``modelspace methods``: the registered attribution methods, one line each.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``json``.

    Returns
    -------
    int
        0.
    """
    from .attribution import list_methods

    info = list_methods()
    _emit(args, info, "\n".join(f"{k:26s} {v}" for k, v in info.items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``modelspace demo``: the built-in benchmark end to end (`world.demo.run_demo`); prints its table.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``out``, ``full``, ``n_probe``, ``no_report``, ``quiet`` and ``json``.

    Returns
    -------
    int
        0 (a failure raises).

    Raises
    ------
    StorageError
        The store or the output folder cannot be used (read-only, full, locked, a damaged manifest). `main`
        exits 3.
    """
    from .world.demo import run_demo

    report = run_demo(args.out, full=args.full, n_probe=args.n_probe, progress=not args.quiet,
                      write_page=not args.no_report)
    _emit(args, report, report.get("table", ""))
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    """``modelspace study``: the fidelity study (`world.study.run_study`); prints its tables.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``out``, ``n_probe``, ``methods``, ``baselines`` (None: the study's defaults),
        ``no_labels`` (no label-based rows), ``quiet`` and ``json``.

    Returns
    -------
    int
        0 (a failure raises).

    Raises
    ------
    InputError
        An unknown method or baseline. `main` exits 2.
    StorageError
        The store or the output folder cannot be used (read-only, full, locked, a damaged manifest). `main`
        exits 3.
    """
    from .world.study import run_study

    chosen = {"n_probe": args.n_probe, "methods": args.methods, "baselines": args.baselines,
              "label_scores": () if args.no_labels else None}
    results = run_study(args.out, progress=not args.quiet, **{k: v for k, v in chosen.items() if v is not None})
    _emit(args, results, results["table"])
    return 0


# ---------------------------------------------------------------------------- plumbing


def _failed(space) -> int:
    """Exit code of a command that ran models: 1 when any model × method failed, else 0.

    A model skipped as failed before is still a failure: its maps are missing.
    """
    if not space.failures_:
        return 0
    models = sorted({f.model for f in space.failures_})
    total = len(set(space.members_) | set(models))
    skipped = any(f.message.startswith("skipped, failed before") for f in space.failures_)
    _log.error("%d of %s failed (%s); the others' results are written (exit 1)%s", len(models), plural(total, "model"),
               ", ".join(models), "; --retry-failed tries those that failed before again" if skipped else "")
    return 1


def _preflight(args: argparse.Namespace) -> None:
    """Check the device and the output paths before any work.

    A bad one is then a message, not a traceback after hours of computing.
    """
    if getattr(args, "device", None) is not None and getattr(args, "executor", LocalExecutor.name) == LocalExecutor.name:
        _check_device(args.device)  # with Ray the device is the workers', which this machine may not have
    if args.command == "probe":
        _check_writable(Path(args.out), "--out", folder=False)
    elif args.command == "report":
        if args.out is not None:
            _check_writable(Path(args.out), "--out", folder=False)
    elif getattr(args, "out", None) is not None:
        _check_writable(Path(args.out), "--out", folder=True)


def _check_device(device: str) -> None:
    """Raise InputError unless ``device`` names a torch device this machine has."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"--device {device!r}: not a torch device ({exc}); e.g. cpu, cuda, cuda:1") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = "built with" if torch.backends.cuda.is_built() else "built without"
            raise InputError(f"--device {device}: CUDA is not available here (torch {torch.__version__}, {built} "
                             "CUDA); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: MPS is not available here; use --device cpu")


def _check_writable(path: Path, flag: str, folder: bool) -> None:
    """Raise InputError unless ``path`` can be written: a folder (created later) or a file."""
    if path.exists():
        if folder and not path.is_dir():
            raise InputError(f"{flag} {path}: exists and is not a folder")
        if not folder and path.is_dir():
            raise InputError(f"{flag} {path}: is a folder; give a file name")
    # The nearest existing folder is where the first file or folder will be made.
    base = path if folder and path.is_dir() else path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise InputError(f"{flag} {path}: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: {base} is not writable")


def _n_relevant(args: argparse.Namespace, truth, labels) -> int:
    """``--n-relevant`` checked against the candidates the truth ranks among these task labels.

    Left out, the API's default (`evaluation.relevant_for`).
    """
    from .evaluation import relevant_for

    args.n_relevant = relevant_for(truth, labels, args.n_relevant)
    return args.n_relevant


def _zoo(path: str, trust_checkpoints: bool = False, check: bool = False, weights_dir: str | None = None,
         random_weights: bool = False):
    """The zoo file's specs.

    With ``check``, for commands that load the models, every source's name is resolved first
    (`check_sources`, as `ModelSpace.fit` does), so a typo fails before the probe is read.
    ``weights_dir`` becomes the ``weights`` of the entries that take one and name none; ``random_weights``
    makes every pretrained model a random one (``pretrained = false``).
    """
    from dataclasses import replace

    from .models import check_sources, load_zoo
    from .models.spec import PRETRAINED_SOURCES, WEIGHTS_SOURCES

    specs = load_zoo(path)
    if trust_checkpoints:  # the explicit opt-in to unpickle every checkpoint of this zoo file
        specs = [replace(s, trust_checkpoint=True) if s.prefix == "checkpoint" else s for s in specs]
    if weights_dir is not None:
        if random_weights:
            raise InputError("--weights-dir and --random-weights: give one of the two")
        if not Path(weights_dir).expanduser().is_dir():
            raise InputError(f"--weights-dir {weights_dir}: no such folder")
        specs = [replace(s, weights=weights_dir) if s.prefix in WEIGHTS_SOURCES and s.weights is None and s.pretrained
                 else s for s in specs]
    if random_weights:
        random = [s.name for s in specs if s.prefix in PRETRAINED_SOURCES and s.pretrained]
        specs = [replace(s, pretrained=False, weights=None) if s.name in random else s for s in specs]
        _log.warning("--random-weights: %s with random weights; the maps and every figure from them mean nothing",
                     plural(len(random), "model"))
    if check:
        check_sources(specs)
    return specs


def _probe(args: argparse.Namespace, specs):
    """The probe set: a saved one, or the folder read at ``--probe-size`` (default: `probe_size_for` the zoo)."""
    from .models import probe_size_for
    from .probe import ProbeSet

    path = Path(args.probe)
    if path.suffix == ".npz":
        return ProbeSet.load(path)
    size = args.probe_size if args.probe_size is not None else probe_size_for(specs)
    return _read_probe_folder(path, size, args.limit, args.seed, args.quiet)


def _read_probe_folder(folder, size: int, limit: int | None, seed: int, quiet: bool):
    """`ProbeSet.from_folder`, each skipped file said on stderr with its reason as the folder is read."""
    from .probe import ProbeSet

    probe = ProbeSet.from_folder(folder, size=size, limit=limit, seed=seed, progress=not quiet)
    if probe.skipped:  # one record per file: a record is one line
        _log.warning("probe folder %s: %s skipped, %s read", folder, plural(len(probe.skipped), "file"),
                     plural(len(probe), "image"))
        for line in _skipped_lines(probe.skipped, shown=SKIPPED_SHOWN):
            _log.warning("%s", line)
    return probe


def _labelled(args: argparse.Namespace, specs):
    """``--labels``: the labelled target images (read as the probe folder is) and their labels.

    From a folder with one subfolder per class or from a CSV of ``image,label`` rows (paths relative to
    the CSV's folder; a first row ``image,label`` is a header).
    """
    import csv

    from .models import probe_size_for
    from .probe import ProbeSet

    path = Path(args.labels)
    size = args.probe_size if args.probe_size is not None else probe_size_for(specs)
    if path.is_dir():
        images = ProbeSet.from_folder(path, size=size, progress=not args.quiet)
        loose = [n for n in images.names if "/" not in n]
        if loose:
            raise InputError(f"--labels {path}: {loose[0]!r} is not in a class subfolder; put each image in "
                             "a folder named after its class, or pass a CSV of image,label rows")
        return images, [n.split("/", 1)[0] for n in images.names]
    if not path.is_file():
        raise InputError(f"--labels {path}: no such folder or CSV file")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r and any(cell.strip() for cell in r)]
    if rows and [c.strip().lower() for c in rows[0]] == ["image", "label"]:
        rows = rows[1:]
    bad = [i for i, r in enumerate(rows) if len(r) != 2]
    if not rows or bad:
        raise InputError(f"--labels {path}: expected rows image,label" + (f" (row {bad[0] + 1} has "
                         f"{len(rows[bad[0]])} cells)" if bad else ", found none"))
    wanted = {Path(image.strip()).as_posix(): label.strip() for image, label in rows}
    images = ProbeSet.from_folder(path.parent, size=size, progress=not args.quiet)
    index = {n: i for i, n in enumerate(images.names)}
    missing = [n for n in wanted if n not in index]
    if missing:
        raise InputError(f"--labels {path}: {len(missing)} listed image(s) not found (or not readable) under "
                         f"{path.parent}: {', '.join(missing[:5])}")
    keep = [index[n] for n in wanted]
    return images.subset(keep), [wanted[images.names[i]] for i in keep]


def _label_lines(scores: dict[str, dict[str, float]], info: dict) -> str:
    """The label-based scores as one line per score, models best first.

    Under a score that cannot rank these models, why (`ModelSpace.label_info_`).
    """
    k = info.get("n_classes")
    classes = f" of {k} class{'' if k == 1 else 'es'}" if k else ""
    lines = [f"label-based scores on {plural(info['n_images'], 'labelled image')}{classes} (higher is better):"]
    for score, per_model in scores.items():
        ranked = sorted(per_model.items(), key=lambda kv: -kv[1])
        lines.append(f"  {score:28s} " + ", ".join(f"{printable(m)} {v:.4g}" for m, v in ranked))
        lines += [f"    cannot rank these models: {why}" for why in info["cannot_rank"].get(score, [])]
    return "\n".join(lines)


def _space(args: argparse.Namespace):
    from .space import ModelSpace, default_estimators

    if args.store is None:  # one default for every command that computes: running again resumes there
        args.store = str(Path(getattr(args, "out", None) or DEFAULT_OUT) / "store")
        _log.info("maps are stored in %s (the default store; --store chooses another)", args.store)
    # --epsilon configures an ε-LRP named plainly; an id such as "lrp_epsilon(epsilon=0.01)" says its own ε.
    # Without --methods (and --epsilon), the API's defaults: the paper's three and the default estimator's.
    methods = None
    if args.methods_given is not None or args.epsilon is not None:
        methods = [get_method(m, epsilon=args.epsilon) if args.epsilon is not None and not has_params(m)
                   and get_method(m).name == "lrp_epsilon" else m for m in args.methods_given or DEFAULT_METHODS]
        if args.methods_given is None:
            methods += default_estimators(methods, add_methods=True)[0]
    return ModelSpace(methods=methods, store=args.store, runtime=from_args(Runtime, args),
                      executor=from_args(EXECUTORS[args.executor], args), sketch=args.sketch,
                      retry_failed=args.retry_failed, recompute=args.recompute, progress=not args.quiet)


def _report(args: argparse.Namespace, summary: dict, space, done: str) -> None:
    from .results import confidence_summary

    summary.setdefault("confidence", confidence_summary(space.results_))
    lines = [f"probe: {plural(summary['probe']['n_images'], 'image')}, hash {summary['probe']['hash'][:12]}, "
             f"{plural(len(space.probe_.skipped), 'file')} skipped"
             + "".join("\n" + line for line in _skipped_lines(space.probe_.skipped))]
    notes = {r.confidence_note for r in space.results_.values()}
    shared = len(notes) == 1 and "" not in notes  # e.g. too few probe images: said once, not per estimator
    if shared:
        lines.append(notes.pop())
    for method_id, r in space.results_.items():
        lines.append(f"\n{method_id}: {plural(len(r.names), 'model')}")
        if r.confidence_note and not shared:
            lines.append(f"  {r.confidence_note}")
        for target, ranked in list(r.ranking.items())[:12]:
            lines.append(f"  {printable(target):20s} ← " + ", ".join(f"{printable(s)} {a:.3f}" for s, a in ranked[:3])
                         + _confidence_text((r.confidence or {}).get(target)))
    for estimator, reason in space.not_computed_.items():
        lines.append(f"\n{estimator}: not computed: {reason}")
    if space.failures_:  # each failure's message went to stderr as it happened, and is in results.json
        lines.append(f"failed: {', '.join(dict.fromkeys(printable(f.model) for f in space.failures_))}")
    if summary.get("evaluation"):
        lines.append("\n" + format_table(summary["evaluation"]))
    lines.append(_work_line(space.work_))
    if args.random_weights:
        summary["random_weights"] = True
        lines.append("random weights (--random-weights): these figures mean nothing")
    lines.append(done)
    _emit(args, summary, "\n".join(lines))


def _work_line(work: dict) -> str:
    """What a run computed and what it found in the store: map units, and models' encoder activations."""
    line = f"work: {plural(work['computed'], 'map unit')} computed, {work['reused']} found in the store"
    if work["activations_computed"] or work["activations_reused"]:
        line += (f"; encoder activations of {plural(work['activations_computed'], 'model')} computed, "
                 f"{work['activations_reused']} found in the store")
    return line


def _confidence_text(c: dict | None) -> str:
    """A ranking line's confidence: ``"   · confidence high 0.86 (S 0.90, G 0.82)"``, or "" when none."""
    if not c:
        return ""
    parts = [f"{name} {c[key]:.2f}" for name, key in (("S", "stability"), ("G", "agreement")) if c.get(key) is not None]
    return f"   · confidence {c['band']} {c['confidence']:.2f} ({', '.join(parts)})"


def plural(n: int, word: str) -> str:
    """``"1 model"``, ``"0 models"``, ``"3 models"``: a count with its noun.

    Parameters
    ----------
    n : int
        The count.
    word : str
        The noun in the singular; the plural adds an "s".

    Returns
    -------
    str
        ``"{n} {word}"``, the noun in the plural unless `n` is 1.
    """
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _skipped_lines(skipped, shown: int = 20) -> list[str]:
    """One line per skipped probe file (path: reason), the first ``shown`` of them."""
    lines = [f"  skipped {printable(path)}: {printable(reason)}" for path, reason in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"  ... and {len(skipped) - shown} more")
    return lines


def _emit(args: argparse.Namespace, data, text: str) -> None:
    """The command's result, on the real stdout (everything else goes to stderr, see `main`)."""
    out = getattr(args, "stdout", None) or sys.stdout
    if args.json:  # progress bars go to stderr: stdout stays one JSON document
        print(json.dumps(data, indent=1, default=str), file=out)
    elif not args.quiet:
        print(text, file=out)


class _Printable(logging.Formatter):
    """``modelspace: <message>``, the message's control characters escaped (`printable`): a record is one line."""

    def format(self, record: logging.LogRecord) -> str:
        return "modelspace: " + printable(super().format(record))


class _TqdmHandler(logging.Handler):
    """Log records to stderr through tqdm, so that they do not break a progress bar in half."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's own convention
            self.handleError(record)


@contextlib.contextmanager
def _console(quiet: bool):
    """While a command runs, stdout is stderr and the log records go there too.

    A model's own ``print`` and Ray's lines must not break ``--json``; a Ray connection the command made
    ends before stdout is restored. "modelspace" log records go to stderr (failures; only errors with
    ``--quiet``), and ``--quiet`` also silences the progress bars of Hugging Face libraries.
    """
    handler = _TqdmHandler()
    handler.setFormatter(_Printable("%(message)s"))
    level = _log.level
    _log.addHandler(handler)
    _log.setLevel(logging.ERROR if quiet else logging.INFO)
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_DISABLE_PROGRESS_BARS",)}
    if quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by huggingface_hub and transformers on import
        if "transformers" in sys.modules:  # imported already: its flag was read then
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            try:
                yield
            finally:
                _leave_ray()
    finally:
        _log.removeHandler(handler)
        _log.setLevel(level)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _leave_ray() -> None:
    """Disconnect from Ray if the command connected to it, while stdout is still stderr.

    Ray's driver prints the errors raylets report (a worker that died) on stdout until it disconnects,
    which would otherwise happen at exit, after the result (`maps.execution.ray.disconnect`).
    """
    ray_executor = sys.modules.get(f"{__package__}.maps.execution.ray")
    if ray_executor is not None:
        ray_executor.disconnect()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelspace",
        description="Which pre-trained vision model transfers best to which task, without labels "
                    "(attribution-map model space, Song et al., NeurIPS 2019).",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values())
               + "\n\nexit codes: 0 done, 1 some models failed (the others' results are written) or another failure "
                 "inside the run, 2 bad input (file, folder, argument), 3 the store or the output folder cannot be "
                 "used (read-only, disk full, locked), 130 interrupted."
               + "\n`modelspace COMMAND --help` explains each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modelspace {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    probe_opts = argparse.ArgumentParser(add_help=False)
    probe_opts.add_argument("--probe-size", type=int, default=None,
                            help="probe image side in pixels (default: the zoo's largest model input side, "
                                 "at most 224)")
    probe_opts.add_argument("--limit", type=int, default=None, help="use a seeded sample of N probe images")
    probe_opts.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    compute = argparse.ArgumentParser(add_help=False)
    compute.add_argument("--store", default=None, help=f"map store folder (resumable); default: OUT/store, i.e. "
                         f"{DEFAULT_STORE} unless --out says otherwise (`embed`, which has no --out: {DEFAULT_STORE})")
    compute.add_argument("--methods", nargs="+", default=None, dest="methods_given",
                         help="attribution methods (see `modelspace methods`; default: the paper's three and the "
                         "default estimator's, as ModelSpace's); a name, or an id with parameters, e.g. "
                         "\"transformed(method='gxi',pool=4)\"")
    compute.add_argument("--epsilon", type=float, default=None,
                         help=f"ε of ε-LRP (default {get_method('lrp_epsilon').epsilon:g})")
    add_options(compute, Runtime)  # the flags and their defaults are the configuration objects' own
    add_options(compute, Executor)
    compute.add_argument("--sketch", type=int, default=None, metavar="K",
                         help="estimate affinities from K-dimensional random projections of the maps, kept in the "
                              "store (for very large stores; default: exact)")
    compute.add_argument("--retry-failed", action="store_true",
                         help="compute again the models and methods the store records as failed before")
    compute.add_argument("--recompute", nargs="+", default=[], metavar="NAME",
                         help="drop and compute again the stored maps of these models (after editing their code: "
                              "store keys cover a model's spec and weights, not its code)")
    compute.add_argument("--executor", default=LocalExecutor.name, choices=list(EXECUTORS),
                         help=f"where models run: '{LocalExecutor.name}' (this process, default) or "
                              f"'{RayExecutor.name}' (a Ray cluster, one actor per model; needs the 'ray' extra)")
    add_options(compute, RayExecutor, prefix=f"with --executor {RayExecutor.name}: ",
                exclude=[f.name for f in dataclasses.fields(Executor)])
    compute.add_argument("--trust-checkpoints", action="store_true",
                         help="unpickle checkpoint files in full (can run code in them); only for files you trust")
    compute.add_argument("--weights-dir", default=None, metavar="DIR",
                         help="folder of published weights files under their published names (the taskonomy: "
                              "source's <task>_encoder-<sha256>.pth), for the entries that name no weights")
    compute.add_argument("--random-weights", action="store_true",
                         help="build every timm, torchvision and taskonomy model with random weights (pretrained = "
                              "false): runs the pipeline where weights are missing; the figures mean nothing")
    truth_opts = argparse.ArgumentParser(add_help=False)
    truth_opts.add_argument("--truth", default=None, help="ground truth: 'taskonomy' or a CSV file")
    truth_opts.add_argument("--n-relevant", type=int, default=None,
                            help=f"true top sources counted relevant (default {DEFAULT_N_RELEVANT}, or the number of "
                                 "candidate sources when the truth ranks fewer among the models)")

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help_text: str, parents: list) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common, *parents], help=help_text, description=help_text,
                           epilog=f"examples:\n  {EXAMPLES[name]}", formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("run", cmd_run, "the whole pipeline: maps, affinities, rankings, trees, plots, the HTML report "
            "(and the evaluation, with --truth)", [probe_opts, compute, truth_opts])
    p.add_argument("zoo", help="zoo file (TOML or YAML), or the name of a bundled zoo: taskonomy")
    p.add_argument("probe", help="probe image folder, or a .npz written by `modelspace probe`")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}). {_RERUN_OUT}")
    p.add_argument("--no-report", action="store_true", help="skip OUT/report.html")
    p.add_argument("--labels", default=None, metavar="PATH",
                   help="labelled target images: a folder with one subfolder per class, or a CSV of "
                        "image,label rows (paths relative to the CSV); scores every model → results.json "
                        f"\"label_scores\" (also OUT/{LABEL_SCORES_JSON}) and the report's section, with a warning "
                        "on any score that cannot rank the models on that many labels")
    p.add_argument("--label-scores", nargs="+", default=list(DEFAULT_SCORES), metavar="SCORE",
                   help=f"label-based scores with --labels (default: {' '.join(DEFAULT_SCORES)}; also "
                        f"{' '.join(s for s in list_scores() if s not in DEFAULT_SCORES)} for models with a "
                        "classifier head)")
    p.add_argument("--summary-estimator", default=None, metavar="ID",
                   help="estimator whose sources the report's summary lines name (default: the best by P@5 "
                        "with --truth, else the first)")

    p = add("report", cmd_report, "one self-contained HTML page of an output folder (figures embedded; "
            "opens offline)", [truth_opts])
    p.add_argument("folder", help="output folder of `modelspace run` or `modelspace demo`")
    p.add_argument("--out", default=None, help="HTML file to write (default FOLDER/report.html)")
    p.add_argument("--output", dest="out", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # its old name
    p.add_argument("--title", default="modelspace report", help="page title")
    p.add_argument("--summary-estimator", default=None, metavar="ID",
                   help="estimator whose sources the summary lines name (default: the best by P@5 with a "
                        "ground truth, else the first)")
    p.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                   help="the pair of estimators the page compares first: A ranks the sources, B gives the "
                        "similarity (default: the first attribution method against the first other estimator)")

    p = add("probe", cmd_probe, "load a probe image folder once and save it (.npz) with its content hash", [])
    p.add_argument("folder", help="folder of images (searched recursively)")
    p.add_argument("--probe-size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--size", dest="probe_size", type=int, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # its old name, kept for scripts
    p.add_argument("--limit", type=int, default=None, help="keep a seeded sample of N images")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--out", default="probe.npz", help="file to write (default probe.npz)")

    p = add("embed", cmd_embed, "compute and store the attribution maps (only those missing)", [probe_opts, compute])
    p.add_argument("zoo", help="zoo file (TOML or YAML), or the name of a bundled zoo: taskonomy")
    p.add_argument("probe", help="probe image folder, or a .npz written by `modelspace probe`")

    p = add("affinity", cmd_affinity, "affinity matrices, rankings, trees and plots from the store", [probe_opts, compute])
    p.add_argument("zoo", help="zoo file (TOML or YAML), or the name of a bundled zoo: taskonomy")
    p.add_argument("probe", help="probe image folder, or a .npz written by `modelspace probe`")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}). {_RERUN_OUT}")

    p = add("tree", cmd_tree, "agglomerative similarity tree (Newick + dendrogram) of an affinity CSV", [])
    p.add_argument("affinity", help="affinity_<method>.csv written by `run` or `affinity`")
    p.add_argument("--linkage", default="average", help="scipy linkage method (default average)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")

    p = add("evaluate", cmd_evaluate, "P@K / R@K of an affinity CSV against a ground truth (default taskonomy)",
            [truth_opts])
    p.add_argument("affinity", help="affinity_<method>.csv written by `run` or `affinity`")
    p.add_argument("--zoo", default=None, help="zoo file mapping model names to task labels")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")

    p = add("models", cmd_models, "list the models in a store (one this user cannot write is read, not changed)", [])
    p.add_argument("--store", default=DEFAULT_STORE, help=f"map store folder, an existing one (default {DEFAULT_STORE})")

    p = add("remove", cmd_remove, "remove a model's maps and affinities from a store (a run computing the model "
            "meanwhile stops computing it and stores nothing more of it)", [])
    p.add_argument("name", help="model name, or model key or a unique prefix of it, as `modelspace models` lists "
                                "them; a name that several stored models share is refused with the candidates")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"map store folder, an existing one (default {DEFAULT_STORE})")

    p = add("gc", cmd_gc, "remove from a store every model that is not one of a zoo's current models (stale "
            "entries left after a model's spec or weights changed, models dropped from the zoo), and the rows and "
            "files of keys no model is registered under. Every model of the zoo is loaded, weights included, to "
            "compute its current key", [])
    p.add_argument("--keep-zoo", required=True, metavar="ZOO", help="zoo file whose models are kept")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"map store folder (default {DEFAULT_STORE})")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, delete nothing")
    p.add_argument("--trust-checkpoints", action="store_true",
                   help="unpickle checkpoint files in full (can run code in them); only for files you trust")

    p = add("rebuild", cmd_rebuild, "make a store's manifest anew from its files, after it was refused as damaged: "
            "the manifest (with its -wal and -shm files) is moved aside, kept, and every model's registration and "
            "every shard, sketch and prepared form whose file matches its identity sidecar is entered again; cached "
            "affinities and recorded failures start empty. Run it while no other modelspace process uses the store", [])
    p.add_argument("--store", default=DEFAULT_STORE,
                   help=f"map store folder, an existing one (default {DEFAULT_STORE})")

    add("methods", cmd_methods, "list the attribution methods", [])

    p = add("demo", cmd_demo, "the built-in benchmark end to end (writes OUT/report.html)", [])
    p.add_argument("--out", default=f"{DEFAULT_OUT}/demo", help=f"output folder (default {DEFAULT_OUT}/demo)")
    p.add_argument("--full", action="store_true", help="1000 probe images instead of 100 (slower)")
    p.add_argument("--n-probe", type=int, default=None, help="number of probe images (overrides --full)")
    p.add_argument("--no-report", action="store_true", help="skip OUT/report.html")

    p = add("study", cmd_study, "fidelity study: estimators × probe domains, probe-size curve, clustering, asymmetry, and the "
            "'which estimator when' table (OUT/table.md)", [])
    p.add_argument("--out", default=f"{DEFAULT_OUT}/study", help=f"output folder (default {DEFAULT_OUT}/study)")
    p.add_argument("--n-probe", type=int, default=None, help="probe images per domain (default 100: world.study.N_PROBE)")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="attribution methods to measure (default: world.study.STUDY_METHODS), e.g. to add the "
                        "costly modelgif beside gradient_x_input")
    p.add_argument("--baselines", nargs="+", default=None, metavar="BASELINE",
                   help="label-free baselines to measure (default: world.study.STUDY_BASELINES)")
    p.add_argument("--no-labels", action="store_true", help="skip the label-based rows")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``modelspace`` command: parse the arguments, check the device and paths, run, and exit-code it.

    Results go to stdout (JSON with ``--json``), everything else to stderr. Errors are not raised but
    printed, one line, and turned into the exit code the module docstring lists; argparse's own errors
    (an unknown option, ``--help``) exit through ``SystemExit`` as argparse does.

    Parameters
    ----------
    argv : sequence of str or None, default None
        The arguments after the program's name; None: ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code: 0 done; 1 some models failed, another modelspace failure, or a bug (its
        traceback printed); 2 bad input (`InputError`); 3 the store, the output folder or the
        environment cannot be used (`StorageError`); 130 interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    args.stdout = sys.stdout  # results only; `_console` sends everything else to stderr
    if getattr(args, "truth", None) is None and args.command == "evaluate":
        args.truth = "taskonomy"
    try:
        _preflight(args)
        with _console(args.quiet):
            return args.func(args)
    except InputError as exc:
        print(f"modelspace: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except StorageError as exc:  # not the models' fault: the store, the output folder or the disk (exit 3)
        print(f"modelspace: storage error: {printable(str(exc))}", file=sys.stderr)
        return 3
    except ModelspaceError as exc:
        print(f"modelspace: failed: {printable(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("modelspace: interrupted (a store keeps the finished units: run again to resume)", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 (a bug or an environment problem: shown with its traceback)
        for line in traceback.format_exc().splitlines():  # its lines kept, whatever the message holds escaped
            print(printable(line), file=sys.stderr)
        print("modelspace: internal error (exit 1); the traceback above says where", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
