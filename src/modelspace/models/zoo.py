"""Zoo files: the models to compare, read from TOML or YAML into `ModelSpec`s (see `spec` for the fields).

A zoo file lists the models to compare. Two formats are read, chosen by the file's extension.

TOML (``.toml``, one ``[[model]]`` table per model)::

    [[model]]
    name = "resnet_cls"
    source = "checkpoint:weights/resnet_cls.pt"    # relative to this file's folder
    constructor = "python:mypkg.nets:resnet18"
    kwargs = { num_classes = 10 }
    encoder = "layer4"
    input_size = 224                                # or [height, width]
    normalize = "imagenet"                          # or "none", "half", or mean = [...] and std = [...]

    [[model]]
    name = "depth"
    task = "depth_zbuffer"                          # label matched against a ground truth (default: name)
    source = "torchscript:/abs/path/depth.pt"

YAML (``.yaml`` / ``.yml``, read with ``yaml.safe_load`` only; needs pyyaml), a top-level ``models:`` list::

    models:
      - name: resnet_cls
        source: "checkpoint:weights/resnet_cls.pt"
        constructor: "python:mypkg.nets:resnet18"
        kwargs: {num_classes: 10}
        encoder: layer4
      - name: vit
        source: "hf:google/vit-base-patch16-224-in21k"
        mean: [0.5, 0.5, 0.5]
        std: [0.5, 0.5, 0.5]
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from modelspace.errors import ZooError
from modelspace.models.spec import ModelSpec, spec_from_dict


def _read_toml(path: Path) -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ZooError(f"{path}: reading TOML on Python 3.10 needs the 'tomli' package "
                           "(pip install tomli), or use a YAML zoo file") from None
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ZooError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ZooError(f"{path}: not UTF-8 text ({exc}); save the zoo file as UTF-8") from None
    except RecursionError:  # the parser recurses once per level: [[[[...]]]] 100 000 deep
        raise ZooError(f"{path}: nested too deeply to read (a zoo file needs a few levels)") from None
    extra = sorted(set(data) - {"model"})
    if extra:
        hint = " (use [[model]], singular)" if "models" in extra else ""
        raise ZooError(f"{path}: unknown top-level key {extra[0]!r}; a TOML zoo lists [[model]] tables{hint}")
    return data.get("model")


def _read_yaml(path: Path) -> Any:
    try:
        import yaml
    except ModuleNotFoundError:
        raise ZooError(f"{path}: reading YAML needs pyyaml (pip install 'modelspace[yaml]'), "
                       "or use a TOML zoo file") from None
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)  # safe_load: tags like !!python/object are refused, never executed
    except yaml.YAMLError as exc:
        raise ZooError(f"{path}: not valid YAML (only plain data, no Python tags, is read): {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ZooError(f"{path}: not UTF-8 text ({exc}); save the zoo file as UTF-8") from None
    except RecursionError:  # the composer recurses once per level: [[[[...]]]] 100 000 deep
        raise ZooError(f"{path}: nested too deeply to read (a zoo file needs a few levels)") from None
    if not isinstance(data, dict):
        raise ZooError(f"{path}: expected a top-level 'models:' list")
    extra = sorted(set(data) - {"models"}, key=str)
    if extra:
        raise ZooError(f"{path}: unknown top-level key {extra[0]!r}; a YAML zoo holds a 'models:' list")
    return data.get("models")


#: Zoo files shipped with modelspace (in ``modelspace/data/zoos``), by the name `load_zoo` takes for them.
BUNDLED = {"taskonomy": "taskonomy.toml"}


def bundled_zoo(name: str) -> Path:
    """The path of a zoo file shipped with modelspace (`BUNDLED`).

    Parameters
    ----------
    name : str
        A key of `BUNDLED`, e.g. ``"taskonomy"``.

    Returns
    -------
    Path
        The zoo file inside the installed package.

    Raises
    ------
    ZooError
        If no bundled zoo has that name.
    """
    if name not in BUNDLED:
        raise ZooError(f"unknown bundled zoo {name!r}; available: {sorted(BUNDLED)}")
    return Path(str(resources.files("modelspace").joinpath("data", "zoos", BUNDLED[name])))


def load_zoo(path: str | Path) -> list[ModelSpec]:
    """Read a zoo file (TOML or YAML, by extension) into a list of ModelSpecs, in file order.

    Parameters
    ----------
    path : str or Path
        The zoo file, or a name in `BUNDLED` (e.g. ``"taskonomy"``, the seed paper's 20 Taskonomy
        encoders) for a shipped zoo file.

    Returns
    -------
    list of ModelSpec
        The checked entries, in file order, each with the zoo file's folder as ``zoo_dir``.

    Raises
    ------
    ZooError
        Naming the file, the model and the field, for any malformed entry, and for duplicate model
        names, also those equal only once normalised (`spec.normalise_name`), which look alike.
    """
    path = bundled_zoo(path) if isinstance(path, str) and path in BUNDLED else Path(path)
    if not path.is_file():
        raise ZooError(f"{path}: zoo file not found (bundled zoos, by name: {', '.join(sorted(BUNDLED))})")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        entries, expected = _read_toml(path), "[[model]] tables"
    elif suffix in (".yaml", ".yml"):
        entries, expected = _read_yaml(path), "a 'models:' list"
    else:
        raise ZooError(f"{path}: unknown zoo file type {suffix!r}; expected .toml, .yaml or .yml")
    if not isinstance(entries, list) or not entries:
        raise ZooError(f"{path}: no models found; expected {expected}")
    base_dir = path.absolute().parent
    specs: list[ModelSpec] = []
    seen: dict[str, tuple[int, str]] = {}  # a name as kept (NFC) -> the first entry's number and spelling
    for i, entry in enumerate(entries, start=1):
        spec = spec_from_dict(entry, str(path), base_dir, index=i)
        if spec.name in seen:
            first, spelling = seen[spec.name]
            if spelling != entry["name"]:  # equal once normalised: shown as code points, since they look alike
                raise ZooError(f"{path}: model {spec.name!r} (#{i}): field 'name': duplicate of model #{first}: "
                               f"{ascii(spelling)} (#{first}) and {ascii(entry['name'])} (#{i}) are one name in "
                               "Unicode normal form NFC; rename one")
            raise ZooError(f"{path}: model {spec.name!r} (#{i}): field 'name': duplicate of model #{first}")
        seen[spec.name] = (i, entry["name"])
        specs.append(spec)
    return specs
