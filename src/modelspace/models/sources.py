"""One registry from source prefixes (``python:``, ``checkpoint:`` ...) to the loaders that build models.

A loader is ``loader(spec, ref) -> (module, default_encoder[, own])``: ``ref`` is the text after the
prefix, ``default_encoder`` the encoder module name used when the spec names none (None: the whole
output) and ``own`` an `OwnConfig`, what the model says about itself as plain data: its own
preprocessing (timm's pretrained_cfg, torchvision's weights transforms, a Hugging Face image processor
or config) and the layout of R (`encoder.TokenGrid` for ViTs, `encoder.ChannelsLast` for Swin).
Loaders raise ModelLoadError without naming the model: `load_model` wraps every loader, turns its
failures (any exception) into ModelLoadError naming the model and the source, resolves the
preprocessing (`spec.resolve_preprocessing`: the zoo entry's fields, then the model's, then the
defaults), puts the module in eval mode without parameter gradients, and computes the model's identity
key over what the model actually gets.

Beside its loader a source declares (`register_source`) a ``check``, which `check_sources` runs on
every spec before any model loads, so that a mistyped name fails at once with the closest valid names,
and a ``downloads``, the weights it would fetch for want of a local copy, so that a run probes the
network once (`offline_needed`) and, when it cannot be reached, loads with the Hugging Face hub offline
(`hub_offline_mode`): cached weights load, missing ones fail at once instead of after the hub client's
retries. Which load failures a run remembers is `load_repeatable`'s rule, keyed by `spec_key`.

Optional libraries (transformers, safetensors, timm, torchvision) are imported inside their loaders
only, so the rest of modelspace works without them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import pickle
import pkgutil
import socket
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import torch
from torch import nn

from modelspace.errors import InputError, MissingWeightsError, ModelLoadError, ZooError, did_you_mean
from modelspace.models.encoder import ChannelsLast, Encoder, EncoderTap, Layout, TokenGrid, find_module
from modelspace.models.spec import (
    SOURCE_CHECKS,
    SOURCE_DOWNLOADS,
    SOURCES,
    ModelSpec,
    register_source,
    resolve_preprocessing,
    split_source,
)
from modelspace.models.transforms import InputTransform

#: The largest probe size `probe_size_for` picks (see there).
PROBE_SIZE_CAP = 224

#: The seed of torch's CPU generator while a loader builds a model (`load_model`), in a forked RNG.
LOAD_SEED = 0


@dataclass(frozen=True)
class OwnConfig:
    """What a model says about itself, as its loader reads it: plain data.

    Attributes
    ----------
    stated : dict
        Preprocessing field → (value, where it was read) for the fields the model's configuration
        states: ``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct`` (`resolve_preprocessing`).
    layout : TokenGrid, ChannelsLast or None
        How the encoder output R is laid out when it is not a (B, C, H, W) map (`EncoderTap` applies it).
    convention : str or None
        How the model's training prepared an image before normalising it (`transforms.CONVENTIONS`),
        which T_i repeats; None: resized and normalised only.
    """

    stated: dict = field(default_factory=dict)
    layout: Layout | None = None
    convention: str | None = None


def _stated(origin: str, **values: Any) -> dict:
    """``{field: (value, origin)}`` for the values that are not None."""
    return {k: (v, origin) for k, v in values.items() if v is not None}


@dataclass
class LoadedModel:
    """A model ready for attribution: module, resolved encoder name, input transform and identity key.

    ``spec`` is the resolved spec (every preprocessing field set), ``preprocessing`` the record of what
    T_i uses and where each field came from (`resolve_preprocessing`), ``layout`` how R is laid out.

    Parameters
    ----------
    spec : ModelSpec
        The resolved spec: every preprocessing field set.
    module : nn.Module
        The model, in eval mode on its device, its parameters not requiring grad.
    encoder : str or None
        The dotted name of R's module (the spec's, else the loader's default); None: the whole output.
    transform : InputTransform
        T_i: how a probe image becomes this model's input.
    key : str
        The model's identity key (`model_key`), its key in the store.
    layout : TokenGrid or ChannelsLast, optional
        How R is laid out when it is not a (B, C, H, W) map.
    preprocessing : dict, optional
        The `resolve_preprocessing` record (values used and where each came from; ``convention`` too
        when the model has one).
    """

    spec: ModelSpec
    module: nn.Module
    encoder: str | None
    transform: InputTransform
    key: str
    layout: Layout | None = None
    preprocessing: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The model's name (the spec's)."""
        return self.spec.name

    @property
    def encoder_ref(self) -> Encoder:
        """The encoder name with R's layout: what to pass as ``encoder`` to `attribution.attribute`."""
        return Encoder(self.encoder, self.layout)

    def tap(self, stop: bool = True) -> EncoderTap:
        """An EncoderTap that returns this model's encoder output R (laid out as a map).

        Parameters
        ----------
        stop : bool, default True
            End the forward pass right after R.

        Returns
        -------
        EncoderTap
            Called on a transformed input batch, it returns R.
        """
        return EncoderTap(self.module, self.encoder_ref, self.name, stop=stop)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    # Viewed as raw bytes so that every dtype (bfloat16 included, which numpy lacks) hashes alike.
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def state_dict_hash(module: nn.Module) -> str:
    """sha256 over the sorted (name, dtype, shape, bytes) of the module's state dict.

    Extra state that is not a tensor is hashed by its type name and repr.

    Parameters
    ----------
    module : nn.Module
        The model; its tensors may be on any device and of any dtype.

    Returns
    -------
    str
        The hex digest.
    """
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            h.update(f"|{value.dtype}|{tuple(value.shape)}|".encode())
            h.update(_tensor_bytes(value))
        else:  # extra state can be any object; its repr is the best stable description we have
            h.update(f"|{type(value).__name__}|{value!r}|".encode())
    return h.hexdigest()


def model_key(spec: ModelSpec, module: nn.Module, layout: Layout | None = None, convention: str | None = None) -> str:
    """Identity of a loaded model: sha256 of the resolved spec's canonical JSON and the state-dict hash.

    The JSON is ``spec.to_dict()`` with ``interpolation`` only when it is not bilinear, ``layout`` only
    when R is laid out (`TokenGrid`, `ChannelsLast`) and ``convention`` only when the model has an input
    convention (`OwnConfig`): they change the maps, and a spec whose model gets none of them (every CNN
    resized bilinearly, the built-in world's zoo) keeps the key it had before they existed, so stores
    written then are reused. ``weights``, where the file lies, is left out: the state-dict hash says
    what the weights are.

    Parameters
    ----------
    spec : ModelSpec
        The resolved spec (`resolve_preprocessing`).
    module : nn.Module
        The loaded model (`state_dict_hash`).
    layout : TokenGrid or ChannelsLast, optional
        R's layout, when the loader declares one.
    convention : str, optional
        The model's input convention, when it has one.

    Returns
    -------
    str
        The hex sha256, the model's key in the store.
    """
    identity = spec.to_dict()
    identity.pop("weights", None)
    if identity["interpolation"] in (None, "bilinear"):
        del identity["interpolation"]
    if layout is not None:
        identity["layout"] = layout.to_dict()
    if convention is not None:
        identity["convention"] = convention
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((text + "\n" + state_dict_hash(module)).encode()).hexdigest()


def load_model(spec: ModelSpec, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the model a spec describes, in eval mode on ``device``, with parameters not requiring grad.

    The loader runs with torch's CPU generator seeded (`LOAD_SEED`, in a forked RNG: the caller's stream
    is untouched), so weights it leaves to random initialisation come out the same on every load: those
    a Hugging Face checkpoint lacks (e.g. a ViT pooler, newly initialised by transformers), a
    ``pretrained = false`` timm or torchvision model, a ``python:`` constructor that does not seed. The
    key hashes the weights, so without this such a model got a new key, and was computed again under a
    second entry of its name, on every run.

    Parameters
    ----------
    spec : ModelSpec
        The zoo entry.
    device : str or torch.device, default "cpu"
        Where the module is moved (its key is hashed on the CPU before: the device is not identity).

    Returns
    -------
    LoadedModel
        The module, its encoder, T_i, the resolved spec with its preprocessing record, and its key.

    Raises
    ------
    ZooError
        An unknown source prefix, or an encoder name the model lacks.
    MissingWeightsError
        Pretrained weights that are not on this machine (a `ModelLoadError`), naming the model and
        the source.
    ModelLoadError
        Any other failure of the loader (the cause chained), a loader that gives no ``nn.Module`` or
        no `OwnConfig`, or a model configuration whose preprocessing is not usable.
    InputError
        Raised by the loader itself, passed on as it is.
    """
    prefix, ref = split_source(spec.source)
    if prefix not in SOURCES:
        raise ZooError(f"model {spec.name!r}: field 'source': unknown source {spec.source!r}; "
                       f"known prefixes: {', '.join(sorted(SOURCES))}")
    where = f"model {spec.name!r} (source {spec.source!r})"
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(LOAD_SEED)
            module, default_encoder, *rest = SOURCES[prefix](spec, ref)
        own = rest[0] if rest else OwnConfig()
    except InputError:
        raise
    except ModelLoadError as exc:  # a loader's own message: add which model and source
        kind = MissingWeightsError if isinstance(exc, MissingWeightsError) else ModelLoadError
        raise kind(f"{where}: {exc}") from (exc.__cause__ or exc)
    except Exception as exc:
        raise ModelLoadError(f"{where}: could not load: {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{where}: the loader gave a {type(module).__name__}, "
                             "not a torch.nn.Module")
    if not isinstance(own, OwnConfig):
        raise ModelLoadError(f"{where}: the loader's third value is a {type(own).__name__}, not an OwnConfig")
    try:
        resolved, record = resolve_preprocessing(spec, own.stated)
        transform = InputTransform.from_spec(resolved, own.convention)
    except InputError as exc:
        raise ModelLoadError(f"{where}: its own configuration is not usable: {exc}") from exc
    if own.convention is not None:
        record["convention"] = own.convention
    encoder = spec.encoder if spec.encoder is not None else default_encoder
    # hashed on the CPU, before moving: the device is not identity
    key = model_key(resolved, module, own.layout, own.convention)
    module = module.to(device).eval()
    for param in module.parameters():  # attribution needs input gradients only; a loop, since
        param.requires_grad_(False)     # ScriptModules refuse module.requires_grad_
    EncoderTap(module, encoder, spec.name)  # checks the encoder name now rather than mid-run
    return LoadedModel(spec=resolved, module=module, encoder=encoder, transform=transform,
                       key=key, layout=own.layout, preprocessing=record)


def own_config(spec: ModelSpec) -> OwnConfig:
    """What a model's own configuration says, read without its weights.

    timm and torchvision models are built on the meta device, a Hugging Face model's files are read.

    Parameters
    ----------
    spec : ModelSpec
        The zoo entry.

    Returns
    -------
    OwnConfig
        The stated preprocessing and R's layout; empty for other sources, and when the configuration
        cannot be read (`load_model` then reports the problem).
    """
    reader = _CONFIG_READERS.get(spec.prefix)
    if reader is None:
        return OwnConfig()
    try:
        return reader(spec, spec.ref)
    except Exception:  # noqa: BLE001 - a hint only: loading the model says what is wrong
        return OwnConfig()


def probe_size_for(specs: Sequence[ModelSpec], cap: int = PROBE_SIZE_CAP) -> int:
    """The probe size that suits a zoo: its largest model input side, at most ``cap`` pixels.

    Maps are compared at the probe size, and each model gets the probe images resized to its input:
    from the largest side on, no model sees them upsampled (blurred); the cap bounds the store, which
    keeps every map at probe size (a 224-px map is 3·224²·2 bytes = 294 KiB per image and method).
    A spec without ``input_size`` counts with its own configuration's (`own_config`), else 224.

    Parameters
    ----------
    specs : sequence of ModelSpec
        The zoo's entries.
    cap : int, default PROBE_SIZE_CAP
        The largest size returned, in pixels.

    Returns
    -------
    int
        The probe images' side in pixels; ``cap`` for an empty zoo.
    """
    largest = 0
    for spec in sorted(specs, key=lambda s: s.input_size is None):  # the zoo's own sizes first: cheaper
        size = spec.input_size or resolve_preprocessing(spec, own_config(spec).stated)[0].input_size
        largest = max(largest, *size)
        if largest >= cap:
            return cap
    return largest or cap


def check_sources(specs: Iterable[ModelSpec]) -> None:
    """Raise one ZooError naming every spec whose source names nothing that exists, before any model loads.

    Each source's ``check`` (`register_source`) runs offline and cheaply: a timm or torchvision model
    name among the library's models (with timm's pretrained tags), a ``python:`` module that imports
    and has the callable, a ``checkpoint:`` / ``torchscript:`` file that exists, an ``hf:`` folder or a
    hub id in the local cache. The message has a line per bad entry (its zoo file, name and number)
    with the closest valid names. A source whose library does not import is left to its loader.

    Parameters
    ----------
    specs : iterable of ModelSpec
        The zoo's entries.

    Raises
    ------
    ZooError
        Some spec names a model, file or callable that does not exist.
    """
    problems = []
    for spec in specs:
        check = SOURCE_CHECKS.get(spec.prefix)
        if check is None:
            continue
        try:
            check(spec, spec.ref)
        except ZooError as exc:
            problems.append(f"{spec.where}: {exc}")
    if len(problems) == 1:
        raise ZooError(problems[0])
    if problems:
        raise ZooError(f"{len(problems)} zoo entries name models that do not exist (no model was loaded): "
                       + "; ".join(problems))


def spec_key(spec: ModelSpec) -> str:
    """Identity of a zoo entry as written, before its model loads.

    A load failure is remembered under it, so that editing the entry tries the model again.

    Parameters
    ----------
    spec : ModelSpec
        The zoo entry, unresolved.

    Returns
    -------
    str
        The hex sha256 of its canonical JSON and of the zoo file's folder (where its ``python:`` code
        is imported from).
    """
    return hashlib.sha256((spec.to_json() + "\n" + (spec.zoo_dir or "")).encode()).hexdigest()


#: Top-level packages whose exceptions mean a network or hub that failed, not a model that cannot load.
_NETWORK_PACKAGES = ("socket", "ssl", "urllib", "http", "httpx", "httpx2", "httpcore", "httpcore2", "requests",
                     "urllib3", "huggingface_hub")


def load_repeatable(exc: BaseException) -> bool:
    """Whether loading the same spec again would fail the same way, so that a run may remember it.

    Permanent: what the entry or its code says (a constructor's TypeError, an encoder the model lacks,
    a checkpoint that does not match its module, a timm model without pretrained weights). Transient,
    for this exception or any it was raised from: a lack of memory, an OSError (disk, file system,
    network), an HTTP client's or the hub's error, a library that does not import, and pretrained
    weights that are not on this machine (`MissingWeightsError`): fetching them needs no edit.

    Parameters
    ----------
    exc : BaseException
        The load failure; its causes and contexts are followed.

    Returns
    -------
    bool
        True when the failure is permanent.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (MemoryError, torch.OutOfMemoryError, OSError, ImportError, MissingWeightsError)):
            return False
        if type(exc).__module__.split(".")[0] in _NETWORK_PACKAGES:
            return False
        exc = exc.__cause__ or exc.__context__
    return True


# ------------------------------------------------------------------------------------------- network

#: Seconds the reachability probe of `offline_needed` waits for a download host.
PROBE_TIMEOUT_S = 2.0
_TRUE = ("1", "on", "yes", "true")


def hub_offline() -> bool:
    """Whether the Hugging Face hub is offline.

    Returns
    -------
    bool
        True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set to a true value, or
        huggingface_hub's own flag is (`hub_offline_mode`).
    """
    return _env_offline() or bool(getattr(sys.modules.get("huggingface_hub.constants"), "HF_HUB_OFFLINE", False))


def _env_offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def reachable(url: str) -> bool:
    """Whether the host of ``url`` accepts a TCP connection within `PROBE_TIMEOUT_S`.

    Parameters
    ----------
    url : str
        An http or https URL; its port, else 443 or 80, is probed.

    Returns
    -------
    bool
        False when the host cannot be resolved, refuses, or does not answer in time.
    """
    parts = urlsplit(url)
    return _reachable(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:  # no route, no name resolution, refused, timed out
        return False


def offline_needed(specs: Iterable[ModelSpec]) -> bool:
    """Whether these models must load with the hub offline.

    They must when it is offline already, or when some model needs weights that are not cached (its
    source's ``downloads``) from a host that cannot be reached.

    Each such host is probed once, a TCP connection waiting at most `PROBE_TIMEOUT_S`; nothing is
    probed when every model's weights are local. Unreachable, a warning says so: offline, cached
    weights load without the hub client's retries, and a missing download fails at once.

    Parameters
    ----------
    specs : iterable of ModelSpec
        The zoo's entries.

    Returns
    -------
    bool
        True when the run should load within `hub_offline_mode`.
    """
    if hub_offline():
        return True
    hosts = {}
    for spec in specs:
        downloads = SOURCE_DOWNLOADS.get(spec.prefix)
        for url in downloads(spec, spec.ref) if downloads is not None else ():
            parts = urlsplit(url)
            hosts.setdefault((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), url)
    for (host, port), url in hosts.items():
        if not _reachable(host, port):
            _log.warning("no network: %s:%d cannot be reached (for %s); the Hugging Face hub is offline for this "
                         "run: cached weights load, missing ones fail at once", host, port, url)
            return True
    return False


def _set_hub_offline(on: bool) -> None:
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # it read the variable on import
        constants.HF_HUB_OFFLINE = on


@contextlib.contextmanager
def hub_offline_mode(on: bool = True):
    """The Hugging Face hub offline while the block runs (when ``on``), as it was afterwards.

    Sets ``HF_HUB_OFFLINE`` (read by huggingface_hub when it is imported) and, when huggingface_hub is
    imported already, its flag; timm downloads through it, so a missing weights file fails at once.

    Parameters
    ----------
    on : bool, default True
        False leaves the hub as it is (the block runs unchanged).

    Yields
    ------
    None
        Control, with the hub offline.
    """
    if not on:
        yield
        return
    saved = os.environ.get("HF_HUB_OFFLINE")
    flag = getattr(sys.modules.get("huggingface_hub.constants"), "HF_HUB_OFFLINE", None)
    os.environ["HF_HUB_OFFLINE"] = "1"
    _set_hub_offline(True)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved
        _set_hub_offline(_env_offline() if flag is None else flag)  # imported in the block: as if imported now


def _hub_cached(repo: str, filenames: Sequence[str], cache_dir: str | None = None) -> bool:
    """Whether one of ``filenames`` of hub repository ``repo`` is in the local Hugging Face cache.

    ``repo`` is ``id`` or ``id@revision``; False when huggingface_hub does not import.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    repo_id, _, revision = repo.partition("@")
    for filename in filenames:
        try:
            found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision or None)
            if isinstance(found, str):
                return True
        except Exception:  # noqa: BLE001 - an id the hub refuses: not cached
            continue
    return False


def _cached_hub_models() -> list[str]:
    """The model repositories in the local Hugging Face cache (empty without one)."""
    try:
        from huggingface_hub import scan_cache_dir

        return sorted(r.repo_id for r in scan_cache_dir().repos if r.repo_type == "model")
    except Exception:  # noqa: BLE001 - no cache folder, or huggingface_hub missing: nothing to offer
        return []


# --------------------------------------------------------------------------------------------- python

_log = logging.getLogger(__name__)
_IMPORT_LOCK = threading.RLock()  # sys.path and sys.modules are process-wide
#: Top-level module name → the zoo folder it was imported from (by `zoo_imports`).
_FROM_ZOO: dict[str, str] = {}


def _local_top(folder: str, top: str) -> bool:
    """Whether ``folder`` holds a module or package named ``top`` (what an import there would find)."""
    base = Path(folder) / top
    return base.with_suffix(".py").is_file() or base.is_dir()


def _origin(module: Any) -> str | None:
    """The folder a top-level module or package was imported from, or None (built-in, namespace)."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve().parent
    return str(path.parent if Path(file).name == "__init__.py" else path)


@contextlib.contextmanager
def zoo_imports(zoo_dir: str | None, module_name: str):
    """Import ``module_name`` as if the zoo file's folder were first on ``sys.path``, for this import only.

    The rule: while a zoo's ``python:`` source or constructor is imported, the zoo file's folder is the
    first entry of ``sys.path`` (unless it is on it already), and it is taken off again afterwards, so
    another zoo, or later code, does not see the modules of this one. Imported modules stay in
    ``sys.modules`` as any import does (the next model of the zoo reuses them). When the folder holds
    the top-level module (``mynets.py`` or ``mynets/``) and ``sys.modules`` has a module of that name
    imported from *another zoo's* folder, that one is dropped from the cache (with its submodules) and
    the module is imported from this folder: two zoos may each have their own ``mynets.py``. A module of
    that name imported from anywhere else (an installed package, the working directory) stays what
    ``sys.modules`` holds, as Python's own import would keep it; a warning names the shadowed file.

    Parameters
    ----------
    zoo_dir : str or None
        The zoo file's folder (`ModelSpec.zoo_dir`); None or empty imports as usual.
    module_name : str
        The dotted module the block imports.

    Yields
    ------
    None
        Control, with the folder first on ``sys.path``.
    """
    if not zoo_dir:
        yield
        return
    folder = os.path.normpath(zoo_dir)
    top = module_name.split(".")[0]
    with _IMPORT_LOCK:
        local = _local_top(folder, top)
        cached = sys.modules.get(top)
        if local and cached is not None and _origin(cached) != str(Path(folder).resolve()):
            if top in _FROM_ZOO:  # another zoo's module of the same name: this zoo gets its own
                for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                    del sys.modules[name]
            else:
                _log.warning("python source %r: module %r is already imported from %s, so %s beside the zoo "
                             "file is not used; rename it to use it", module_name, top,
                             _origin(cached) or "a built-in", Path(folder) / top)
        added = folder not in sys.path
        if added:
            sys.path.insert(0, folder)
        importlib.invalidate_caches()  # a file written since the last import in this folder is found
        try:
            yield
        finally:
            if added:
                with contextlib.suppress(ValueError):
                    sys.path.remove(folder)
            module = sys.modules.get(top)
            if local and module is not None and _origin(module) == str(Path(folder).resolve()):
                _FROM_ZOO[top] = folder


def _importable(module_name: str, folder: str | None) -> list[str]:
    """Names a ``python:`` source could have meant for ``module_name``.

    They are the top-level modules in the zoo file's folder and on ``sys.path``, or for ``pkg.mod``
    the submodules of ``pkg``.
    """
    parent, _, _ = module_name.rpartition(".")
    if parent:
        try:
            paths = importlib.import_module(parent).__path__
        except Exception:  # noqa: BLE001 - the parent is the problem: nothing to offer
            return []
        return [f"{parent}.{m.name}" for m in pkgutil.iter_modules(paths)]
    return [m.name for m in pkgutil.iter_modules([folder] if folder else [])] + [m.name for m in pkgutil.iter_modules()]


def _import_callable(ref: str, spec: ModelSpec, field: str) -> Callable[..., Any]:
    """Import ``pkg.module:attr.path`` and return the attribute."""
    module_name, _, attr_path = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        where = f" (searched the zoo file's folder {spec.zoo_dir} first, then sys.path)" if spec.zoo_dir else ""
        hint = did_you_mean(module_name, _importable(module_name, spec.zoo_dir)) if exc.name == module_name else ""
        raise ModelLoadError(f"field {field!r}: cannot import module {module_name!r}: "
                             f"{exc}{where}{hint}") from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise ModelLoadError(f"field {field!r}: {module_name!r} has no attribute "
                                 f"{attr_path!r}{did_you_mean(part, public)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelLoadError(f"field {field!r}: {ref!r} is not callable")
    return obj


def _build_python(ref: str, spec: ModelSpec, field: str) -> nn.Module:
    # The call too: a factory may import a helper beside it only when it runs.
    with zoo_imports(spec.zoo_dir, ref.partition(":")[0]):
        factory = _import_callable(ref, spec, field)
        module = factory(**spec.kwargs_dict())
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"field {field!r}: {ref!r} returned a "
                             f"{type(module).__name__}, not a torch.nn.Module")
    return module


def _has_module(module: nn.Module, name: str) -> bool:
    return find_module(module, name) is not None


def _encoder_if_present(module: nn.Module) -> str | None:
    return "encoder" if _has_module(module, "encoder") else None


def _check_python(spec: ModelSpec, ref: str, field: str = "source") -> None:
    """A ``python:`` reference imports (the zoo file's folder first) and names a callable."""
    module_name = ref.partition(":")[0]
    try:
        with zoo_imports(spec.zoo_dir, module_name):
            _import_callable(ref, spec, field)
    except ModelLoadError as exc:
        raise ZooError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - the module's own code fails on import: the entry cannot load
        raise ZooError(f"field {field!r}: importing module {module_name!r} fails: {type(exc).__name__}: {exc}") from exc


@register_source("python", check=_check_python)
def load_python(spec: ModelSpec, ref: str) -> tuple[nn.Module, str | None]:
    """``python:pkg.module:callable``: call it with the spec's kwargs.

    Parameters
    ----------
    spec : ModelSpec
        The zoo entry (its ``kwargs`` and ``zoo_dir``).
    ref : str
        ``pkg.module:callable``, imported with `zoo_imports`.

    Returns
    -------
    tuple of (nn.Module, str or None)
        The module the callable returns, and the default encoder: ``"encoder"`` when the module has one.

    Raises
    ------
    ModelLoadError
        The module does not import, lacks the callable, or the callable returns no ``nn.Module``.
    """
    module = _build_python(ref, spec, "source")
    return module, _encoder_if_present(module)


# ----------------------------------------------------------------------------------------- checkpoint


def _existing_file(ref: str, spec: ModelSpec) -> Path:
    path = Path(ref).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"field 'source': file not found: {path}")
    return path


def _check_file(spec: ModelSpec, ref: str) -> None:
    """A file source names a file that exists (the closest names in its folder otherwise)."""
    path = Path(ref).expanduser()
    if not path.is_file():
        nearby = [p.name for p in path.parent.iterdir()] if path.parent.is_dir() else []
        raise ZooError(f"field 'source': file not found: {path}{did_you_mean(path.name, nearby)}")


def _check_checkpoint(spec: ModelSpec, ref: str) -> None:
    _check_file(spec, ref)
    if spec.constructor is not None:
        _check_python(spec, split_source(spec.constructor)[1], "constructor")


def _read_checkpoint(path: Path, spec: ModelSpec) -> Any:
    """Load a checkpoint file: safetensors, or torch.load restricted to weights unless trusted."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ModuleNotFoundError:
            raise ModelLoadError(f"reading {path.name} needs the 'safetensors' "
                                 "package (pip install safetensors)") from None
        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=not spec.trust_checkpoint)
    except pickle.UnpicklingError as exc:
        if spec.trust_checkpoint:
            raise
        raise ModelLoadError(
            f"checkpoint {path} contains pickled Python objects besides tensors, and "
            "loading those can run arbitrary code, so it was refused. If you trust this file, set "
            "trust_checkpoint = true for this model (or pass --trust-checkpoints to the modelspace "
            f"command). Refused because: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


def _state_dict_of(obj: Any, spec: ModelSpec, path: Path) -> Mapping[str, Any]:
    """The state dict inside a checkpoint: raw, under 'state_dict' / 'model', or a pickled module's."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                return inner.state_dict()
            if isinstance(inner, Mapping):
                return inner
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise ModelLoadError(f"checkpoint {path} holds no state dict (expected a dict of "
                         "tensors, or one under 'state_dict' or 'model')")


def _strip_data_parallel(state: Mapping[str, Any], module: nn.Module) -> Mapping[str, Any]:
    """Drop the 'module.' prefix that nn.DataParallel / DDP checkpoints add, when the model lacks it."""
    own = module.state_dict()
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in own):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


@register_source("checkpoint", check=_check_checkpoint)
def load_checkpoint(spec: ModelSpec, ref: str) -> tuple[nn.Module, str | None]:
    """``checkpoint:PATH``: build with ``constructor``, then strictly load the saved state dict.

    Without a constructor (only allowed with trust_checkpoint) the file must pickle the whole module.
    A safetensors file is read with safetensors, any other with ``torch.load`` (``weights_only``
    unless the entry trusts the checkpoint); a ``module.`` prefix (DataParallel) is dropped when the
    built module lacks it.

    Parameters
    ----------
    spec : ModelSpec
        The zoo entry (its ``constructor``, ``kwargs`` and ``trust_checkpoint``).
    ref : str
        The checkpoint file's path.

    Returns
    -------
    tuple of (nn.Module, str or None)
        The module with the checkpoint's weights, and the default encoder: ``"encoder"`` when present.

    Raises
    ------
    ModelLoadError
        The file is missing or unreadable (untrusted pickles of more than tensors included), holds no
        state dict or no whole module where one is needed, or does not match the constructor's module.
    """
    path = _existing_file(ref, spec)
    obj = _read_checkpoint(path, spec)
    if spec.constructor is None:
        if not isinstance(obj, nn.Module):
            raise ModelLoadError(f"field 'constructor': checkpoint {path} holds no whole "
                                 "module, so a constructor is needed to build one")
        return obj, _encoder_if_present(obj)
    module = _build_python(split_source(spec.constructor)[1], spec, "constructor")
    state = _strip_data_parallel(_state_dict_of(obj, spec, path), module)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"checkpoint {path} does not match the module built by "
                             f"{spec.constructor!r}: {exc}") from exc
    return module, _encoder_if_present(module)


# ---------------------------------------------------------------------------------------- torchscript


@register_source("torchscript", check=_check_file)
def load_torchscript(spec: ModelSpec, ref: str) -> tuple[nn.Module, str | None]:
    """``torchscript:PATH``: ``torch.jit.load``.

    Parameters
    ----------
    spec : ModelSpec
        The zoo entry.
    ref : str
        The TorchScript file's path.

    Returns
    -------
    tuple of (nn.Module, None)
        The scripted module, and no default encoder (see `encoder` on TorchScript).

    Raises
    ------
    ModelLoadError
        The file does not exist.
    """
    path = _existing_file(ref, spec)
    return torch.jit.load(str(path), map_location="cpu"), None


# ------------------------------------------------------------------------------------- hugging face


def hf_default_encoder(module: nn.Module) -> str | None:
    """The encoder of a transformers model.

    ``<base_model_prefix>.encoder`` or ``encoder`` when present (ResNet, ConvNeXt, and ViT in
    transformers 4.x). transformers 5.x ViT-like models have no encoder module but a ``layers`` list:
    its last block gives the same tensor the 4.x encoder returned (before the final layer norm).

    Parameters
    ----------
    module : nn.Module
        A transformers model.

    Returns
    -------
    str or None
        The encoder's dotted name, or None (the whole output) when none is found.
    """
    prefix = getattr(module, "base_model_prefix", "") or ""
    for name in (f"{prefix}.encoder" if prefix else None, "encoder"):
        if name and _has_module(module, name):
            return name
    for list_name in ("layers", "layer", "blocks"):
        blocks = getattr(module, list_name, None)
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
            return f"{list_name}.{len(blocks) - 1}"
    return None


#: Hugging Face model types whose encoder gives ViT-style tokens -> class tokens before the patches
#: (registers, ``config.num_register_tokens``, are added).
HF_PREFIX_TOKENS = {"vit": 1, "deit": 2, "dinov2": 1, "dinov2_with_registers": 1, "beit": 1,
                    "data2vec-vision": 1, "vit_msn": 1}

#: PIL resampling codes (what Hugging Face image processors store) -> names.
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _pair(value: Any) -> tuple[int, int] | None:
    """An int or a (height, width) pair as a pair; None stays None."""
    if value is None:
        return None
    return (value, value) if isinstance(value, int) else tuple(value)


def _resample_name(value: Any) -> str | None:
    """A processor's ``resample``, a PIL code (slow processors) or an InterpolationMode (fast ones), by name."""
    if value is None:
        return None
    try:
        return _PIL_RESAMPLE.get(int(value), str(value))
    except (TypeError, ValueError):
        return str(getattr(value, "value", value))


def _hf_processor(ref: str) -> Any:
    """The image processor saved beside the model, or None."""
    try:
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(ref, local_files_only=True)
    except Exception:  # noqa: BLE001 - no processor saved (OSError), or one this transformers cannot build
        return None


def hf_config(ref: str, config: Any) -> OwnConfig:
    """What a Hugging Face model says about its input, and for ViT-like model types, the token grid.

    The image processor saved with the model gives size, mean, std, resample and crop; without one,
    ``config.image_size`` gives the size.

    Parameters
    ----------
    ref : str
        The model folder or hub id (the processor is read from local files only).
    config : Any
        The model's transformers config.

    Returns
    -------
    OwnConfig
        The stated preprocessing and, for ViT-like models, a `TokenGrid`.

    Raises
    ------
    ModelLoadError
        The config's ``num_channels`` is not 3.
    """
    channels = getattr(config, "num_channels", 3)
    if channels != 3:
        raise ModelLoadError(f"config.num_channels is {channels}; modelspace feeds RGB images (3 channels)")
    stated = _stated("hf config", input_size=_pair(getattr(config, "image_size", None)))
    processor = _hf_processor(ref)
    if processor is not None:
        origin = "hf image processor"
        size, crop = getattr(processor, "size", None) or {}, getattr(processor, "crop_size", None) or {}
        resized = _pair(size.get("shortest_edge")) or (
            (size.get("height"), size.get("width")) if size.get("height") else None)
        cropped = (crop.get("height"), crop.get("width")) if getattr(processor, "do_center_crop", False) and crop else None
        normalize = getattr(processor, "do_normalize", True)
        resample = getattr(processor, "resample", None)
        stated.update(_stated(
            origin, input_size=cropped or resized,
            mean=getattr(processor, "image_mean", None) if normalize else (0.0, 0.0, 0.0),
            std=getattr(processor, "image_std", None) if normalize else (1.0, 1.0, 1.0),
            interpolation=_resample_name(resample),
            crop_pct=round(cropped[0] / resized[0], 4) if cropped and resized else getattr(processor, "crop_pct", None)))
    layout = None
    if getattr(config, "model_type", None) in HF_PREFIX_TOKENS:
        prefix = HF_PREFIX_TOKENS[config.model_type] + int(getattr(config, "num_register_tokens", 0) or 0)
        layout = TokenGrid(prefix, _pair(config.patch_size))
    return OwnConfig(stated, layout)


def _hf_files_config(spec: ModelSpec, ref: str) -> OwnConfig:
    from transformers import AutoConfig

    return hf_config(ref, AutoConfig.from_pretrained(ref, local_files_only=True))


def _check_hf(spec: ModelSpec, ref: str) -> None:
    """An ``hf:`` reference is a model folder, or a hub id whose config is in the local cache.

    The network is not asked: the loader reads local files only.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        return
    try:
        import huggingface_hub  # noqa: F401 - without it the loader says what to install
    except ImportError:
        return
    if _hub_cached(ref, ["config.json"]):
        return
    raise ZooError(f"field 'source': {ref!r} is neither a model folder nor a model in the Hugging Face cache "
                   f"(nothing is downloaded){did_you_mean(ref, _cached_hub_models())}")


@register_source("hf", check=_check_hf)
def load_hf(spec: ModelSpec, ref: str) -> tuple[nn.Module, str | None, OwnConfig]:
    """``hf:DIR_OR_HUB_ID``: ``transformers.AutoModel.from_pretrained`` offline (local dir or HF cache).

    Parameters
    ----------
    spec : ModelSpec
        The zoo entry (its ``kwargs`` go to ``from_pretrained``).
    ref : str
        A model folder, or a hub id in the local cache.

    Returns
    -------
    tuple of (nn.Module, str or None, OwnConfig)
        The model, its default encoder (`hf_default_encoder`) and what it says about its input (`hf_config`).

    Raises
    ------
    ModelLoadError
        transformers is not installed, or the model is neither a local folder nor in the cache.
    """
    try:
        from transformers import AutoModel
    except ModuleNotFoundError:
        raise ModelLoadError("'hf:' sources need transformers "
                             "(pip install 'modelspace[hf]')") from None
    try:
        module = AutoModel.from_pretrained(ref, local_files_only=True, **spec.kwargs_dict())
    except OSError as exc:  # what transformers raises for a missing folder / uncached hub id
        raise ModelLoadError(f"{ref!r} is neither a local model folder nor in the "
                             f"Hugging Face cache (nothing is downloaded): {exc}") from exc
    return module, hf_default_encoder(module), hf_config(ref, module.config)


# --------------------------------------------------------------------------------------------- timm


def _timm_weight_source(cfg: Any) -> str | None:
    """Where timm takes pretrained weights from, per a pretrained config (None: it has no weights)."""
    get = cfg.get if isinstance(cfg, Mapping) else (lambda k: getattr(cfg, k, None))
    for key in ("file", "state_dict", "hf_hub_id", "url"):
        if get(key):
            return key
    return None


def timm_config(module: nn.Module) -> OwnConfig:
    """What a timm model says about its input, and how its ``forward_features`` lays out R.

    The input comes from ``timm.data.resolve_data_config`` (its pretrained_cfg), with the model's own
    ``img_size`` when it was built with another one; the layout is a `TokenGrid` for ViTs and
    `ChannelsLast` for Swin.

    Parameters
    ----------
    module : nn.Module
        A timm model (on any device, the meta device included).

    Returns
    -------
    OwnConfig
        The stated preprocessing and R's layout.
    """
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=module)
    stated = _stated("timm pretrained_cfg", input_size=tuple(cfg["input_size"][1:]), mean=cfg.get("mean"),
                     std=cfg.get("std"), interpolation=cfg.get("interpolation") or None, crop_pct=cfg.get("crop_pct"))
    embed = getattr(module, "patch_embed", None)
    built = _pair(getattr(embed, "img_size", None))
    if built and not getattr(module, "dynamic_img_size", False) and built != stated["input_size"][0]:
        stated["input_size"] = (built, "timm model img_size")  # built with img_size=: the cfg keeps the pretraining size
    layout = None
    if getattr(module, "output_fmt", None) == "NHWC":
        layout = ChannelsLast()
    elif getattr(module, "num_prefix_tokens", None) is not None and embed is not None:
        grid = _pair(getattr(embed, "grid_size", None))
        stride = (built[0] // grid[0], built[1] // grid[1]) if built and grid else _pair(embed.patch_size)
        layout = TokenGrid(int(module.num_prefix_tokens), stride)
    return OwnConfig(stated, layout)


def _timm_meta_config(spec: ModelSpec, ref: str) -> OwnConfig:
    import timm

    with torch.device("meta"):  # no memory, no initialisation: only the configuration is read
        return timm_config(timm.create_model(ref, pretrained=False, **spec.kwargs_dict()))


#: timm model names that name weights by location instead of a registered architecture.
_TIMM_LOCATIONS = ("hf-hub:", "hf_hub:", "local-dir:")
_HUB = "https://huggingface.co"


def _check_timm(spec: ModelSpec, ref: str) -> None:
    """A timm architecture (``timm.list_models``), and a pretrained tag of it when one is given."""
    try:
        import timm
    except Exception:  # noqa: BLE001 - timm, or the torchvision it imports, does not import: the loader says so
        return
    if ref.startswith(_TIMM_LOCATIONS):
        return
    arch, dot, tag = ref.partition(".")
    if not timm.is_model(arch):
        raise ZooError(f"field 'source': timm has no model {arch!r}{did_you_mean(arch, timm.list_models())} "
                       "(timm.list_models() lists them)")
    if dot:
        tagged = timm.list_pretrained(f"{arch}.*")
        if ref not in tagged:
            tags = [t.partition(".")[2] for t in tagged]
            listed = ", ".join(tags[:12]) + (f" and {len(tags) - 12} more" if len(tags) > 12 else "")
            raise ZooError(f"field 'source': timm model {arch!r} has no pretrained tag {tag!r}"
                           f"{did_you_mean(ref, tagged)} (its tags: {listed or 'none'})")


def _timm_downloads(spec: ModelSpec, ref: str) -> list[str]:
    """The pretrained weights timm would download for this spec, when they are not cached.

    That is the hub repository, or the URL of weights that are not on the hub (timm's order: a state
    dict or file given, then the hub, then the URL).
    """
    if not spec.pretrained:
        return []
    kwargs = spec.kwargs_dict()
    if ref.startswith(_TIMM_LOCATIONS[:2]):
        repo = ref.split(":", 1)[1]
        cfg: dict = {"hf_hub_id": repo}
    else:
        try:
            from timm.models import get_pretrained_cfg

            found = get_pretrained_cfg(ref)
        except Exception:  # noqa: BLE001 - no timm, or no such model or tag: `check_sources` says so
            return []
        cfg = asdict(found) if found is not None else {}
    cfg.update(kwargs.get("pretrained_cfg_overlay") or {})
    if cfg.get("state_dict") is not None or cfg.get("file"):
        return []
    repo = cfg.get("hf_hub_id")
    if repo:
        filename = cfg.get("hf_hub_filename") or "pytorch_model.bin"
        names = [filename, "model.safetensors", filename.removesuffix(".bin") + ".safetensors"]
        return [] if _hub_cached(repo, names, kwargs.get("cache_dir")) else [f"{_HUB}/{repo.partition('@')[0]}"]
    url = cfg.get("url")
    if url:
        folder = Path(kwargs["cache_dir"]) if kwargs.get("cache_dir") else Path(torch.hub.get_dir()) / "checkpoints"
        return [] if (folder / os.path.basename(urlsplit(url).path)).is_file() else [url]
    return []


@register_source("timm", check=_check_timm, downloads=_timm_downloads)
def load_timm(spec: ModelSpec, ref: str) -> tuple[nn.Module, str | None, OwnConfig]:
    """``timm:NAME``: ``timm.create_model``; pretrained weights must already be cached (offline).

    Default encoder: the module whose output ``forward_features`` returns (the last feature map
    before pooling), else the last entry of ``model.feature_info``.

    Parameters
    ----------
    spec : ModelSpec
        The zoo entry (its ``kwargs`` go to ``create_model``).
    ref : str
        A timm model name, with a pretrained tag or as ``hf-hub:...``.

    Returns
    -------
    tuple of (nn.Module, str or None, OwnConfig)
        The model, its default encoder (None when the spec names one), and `timm_config`.

    Raises
    ------
    MissingWeightsError
        Pretrained weights that cannot be loaded offline.
    ModelLoadError
        timm does not import, or the model has no pretrained weights while ``pretrained`` is true.
    """
    try:
        import timm
    except ImportError as exc:
        raise ModelLoadError(f"'timm:' sources need timm (and a torchvision that "
                             f"imports with this torch): {exc}") from exc
    kwargs = spec.kwargs_dict()
    try:
        module = timm.create_model(ref, pretrained=spec.pretrained, **kwargs)
    except Exception as exc:
        if not spec.pretrained:
            raise
        raise MissingWeightsError(
            f"pretrained weights for timm model {ref!r} could not be loaded; offline, "
            "they must already be in the Hugging Face / torch hub cache (or give kwargs.pretrained_cfg_overlay "
            f"= {{file = 'PATH'}}). Set pretrained = false for random weights. Cause: {exc}") from exc
    if spec.pretrained and _timm_weight_source(getattr(module, "pretrained_cfg", {}) or {}) is None:
        # timm only warns and keeps random weights here; a silent random model would corrupt the results
        raise ModelLoadError(f"timm model {ref!r} has no pretrained weights; set "
                             "pretrained = false to use it with random weights")
    own = timm_config(module)
    if spec.encoder is not None:  # the zoo names R: no forward pass to find the default
        return module, None, own
    default = _timm_features_module(module, spec.input_size or own.stated["input_size"][0])
    info = getattr(module, "feature_info", None)
    if default is None and isinstance(info, (list, tuple)) and info and isinstance(info[-1], Mapping):
        default = info[-1].get("module")
    return module, default, own


def _timm_features_module(module: nn.Module, size: tuple[int, int]) -> str | None:
    """The module whose output timm's ``forward_features`` returns.

    That is the last feature map before pooling (``feature_info`` can name an earlier one, e.g.
    EfficientNet's blocks before its 1×1 head convolution), or a ViT's final norm. Found with one
    forward of a blank image at the input size.
    """
    if not hasattr(module, "forward_features"):
        return None
    produced: dict[int, str] = {}

    def record(name: str):
        return lambda mod, args, out: produced.__setitem__(id(out), name) if isinstance(out, torch.Tensor) else None

    hooks = [m.register_forward_hook(record(n)) for n, m in module.named_modules() if n]
    training = module.training
    try:
        module.eval()
        with torch.no_grad():
            out = module.forward_features(torch.zeros(1, 3, *size))
    finally:
        for h in hooks:
            h.remove()
        module.train(training)
    return produced.get(id(out))


# --------------------------------------------------------------------------------------- torchvision

#: torchvision family (name prefix) -> encoder module name; longer prefixes are tried first.
TORCHVISION_ENCODERS = {
    "resnet": "layer4", "resnext": "layer4", "wide_resnet": "layer4", "regnet": "trunk_output",
    "vgg": "features", "alexnet": "features", "mobilenet": "features", "efficientnet": "features",
    "convnext": "features", "densenet": "features", "swin": "features", "vit": "encoder",
}


def torchvision_default_encoder(name: str) -> str | None:
    """The encoder module of a torchvision classification model, by family.

    Parameters
    ----------
    name : str
        The torchvision model name (``"resnet50"``); the longest family prefix in
        `TORCHVISION_ENCODERS` wins.

    Returns
    -------
    str or None
        The encoder's dotted name, or None for an unknown family.
    """
    for prefix in sorted(TORCHVISION_ENCODERS, key=len, reverse=True):
        if name.lower().startswith(prefix):
            return TORCHVISION_ENCODERS[prefix]
    return None


def _torchvision_cached(weights: Any) -> Path:
    """Path where torch.hub keeps the weights file (it may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def torchvision_config(ref: str, module: nn.Module) -> OwnConfig:
    """What a torchvision architecture expects, and R's layout.

    Its DEFAULT weights' ``transforms()`` give crop size, mean, std and interpolation (the weights used
    when pretrained, and what the architecture was trained with when not); the model's own
    ``image_size`` wins when it was built with another one.

    Parameters
    ----------
    ref : str
        The torchvision model name.
    module : nn.Module
        The built model (on any device, the meta device included).

    Returns
    -------
    OwnConfig
        The stated preprocessing (empty when the name has no weights) and R's layout (`TokenGrid` for
        a ViT, `ChannelsLast` for Swin).
    """
    import torchvision

    stated = {}
    try:
        weights = torchvision.models.get_model_weights(ref).DEFAULT
        t = weights.transforms()
        crop, resize = tuple((list(t.crop_size) * 2)[:2]), t.resize_size
        stated = _stated(f"torchvision {weights} transforms", input_size=crop, mean=tuple(t.mean), std=tuple(t.std),
                         interpolation=t.interpolation.value,
                         crop_pct=round(crop[0] / resize[0], 4) if resize else None)
    except (AttributeError, KeyError, ValueError, TypeError):  # no weights, or weights of another task
        pass
    built = _pair(getattr(module, "image_size", None))
    if built and stated.get("input_size", (None,))[0] != built:
        stated["input_size"] = (built, "torchvision model image_size")
    layout = None
    if isinstance(module, torchvision.models.VisionTransformer):
        layout = TokenGrid(1, _pair(module.patch_size))  # the class token, then the patches
    elif isinstance(module, torchvision.models.SwinTransformer):
        layout = ChannelsLast()
    return OwnConfig(stated, layout)


def _torchvision_meta_config(spec: ModelSpec, ref: str) -> OwnConfig:
    import torchvision

    with torch.device("meta"):
        return torchvision_config(ref, torchvision.models.get_model(ref, weights=None, **spec.kwargs_dict()))


def _check_torchvision(spec: ModelSpec, ref: str) -> None:
    """A model name that ``torchvision.models.get_model`` knows (``torchvision.models.list_models``)."""
    try:
        import torchvision
    except Exception:  # noqa: BLE001 - a torchvision that does not import with this torch: the loader says so
        return
    names = torchvision.models.list_models()
    if ref.lower() not in names:
        raise ZooError(f"field 'source': torchvision has no model {ref!r}{did_you_mean(ref.lower(), names)} "
                       "(torchvision.models.list_models() lists them)")


@register_source("torchvision", check=_check_torchvision)
def load_torchvision(spec: ModelSpec, ref: str) -> tuple[nn.Module, str | None, OwnConfig]:
    """``torchvision:NAME``: ``torchvision.models.get_model``; DEFAULT weights must already be cached.

    Parameters
    ----------
    spec : ModelSpec
        The zoo entry (its ``kwargs`` go to ``get_model``).
    ref : str
        The torchvision model name.

    Returns
    -------
    tuple of (nn.Module, str or None, OwnConfig)
        The model, its default encoder (`torchvision_default_encoder`) and `torchvision_config`.

    Raises
    ------
    MissingWeightsError
        ``pretrained`` and the DEFAULT weights are not in torch's hub cache (nothing is downloaded).
    ModelLoadError
        torchvision does not import with this torch.
    """
    try:
        import torchvision
    except ImportError as exc:
        raise ModelLoadError(f"'torchvision:' sources need a torchvision that imports "
                             f"with this torch: {exc}") from exc
    weights = None
    if spec.pretrained:
        weights = torchvision.models.get_model_weights(ref).DEFAULT
        cached = _torchvision_cached(weights)
        if not cached.is_file():  # checked first: get_model would try to download it
            raise MissingWeightsError(f"pretrained weights for torchvision model {ref!r} are not "
                                 f"cached at {cached} and nothing is downloaded; put the file there, or set "
                                 "pretrained = false for random weights")
    module = torchvision.models.get_model(ref, weights=weights, **spec.kwargs_dict())
    return module, torchvision_default_encoder(ref), torchvision_config(ref, module)


#: Source prefix -> ``reader(spec, ref) -> OwnConfig`` without the weights (`own_config`).
_CONFIG_READERS = {"timm": _timm_meta_config, "torchvision": _torchvision_meta_config, "hf": _hf_files_config}
