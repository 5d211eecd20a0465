"""The ``taskonomy:TASK`` source: the Taskonomy encoders (Zamir et al., CVPR 2018) as the seed paper used them.

The architecture is written here from the published one, the PyTorch port of Taskonomy's encoders by
Sax et al. ("visual priors", github.com/alexsax/visual-prior, ``visualpriors/taskonomy_network.py``):
a ResNet-50 whose stages stride in their *last* block (a 1×1 max pooling on its shortcut), not their
first, with strides 2, 2, 1, 1, a 7×7 stem convolution without padding after a zero padding of 3, a
ceil-mode max pooling, and a 3×3 convolution compressing the 2048 channels to 8 (``compress1``,
``compress_bn``, ``relu1``). A 256² input in [-1, 1] gives an 8×16×16 representation. Its state-dict
keys and shapes are the published checkpoints' (each file holds them under ``"state_dict"``).

R is the output of ``relu1``: Taskonomy's ``encoder_output`` (taskbank's
``resnet_encoder_fully_convolutional_16x16x8``: ``compress1`` as a convolution, batch norm and ReLU),
which the seed paper attributed (Song et al. 2019, tools/deep_attribution.py). The group normalisation
after it is the visual-priors port's addition for its own use; the module keeps it so that its forward
is the port's, and the tap stops before it.

Weights: the published files are named ``<task>_encoder-<sha256>.pth``. They are looked for, in this
order: the zoo entry's ``weights`` (a file, or a folder holding the published names); else the folder
in `WEIGHTS_DIR_ENV` (``--weights-dir`` sets an entry's ``weights`` to it); then torch's hub cache
(``torch.hub.get_dir()/checkpoints``), where they are downloaded from `URL` when its host can be
reached. The sha256 in a file's name is verified before the file is read, and it is read with
``torch.load(weights_only=True)``. `check_sources` fails at once (a ZooError, exit 2) when a file is
missing and cannot be downloaded, naming the file and its URL: the host is probed once, and an
unreachable host is not probed again for `UNREACHABLE_MEMO_S` seconds.

Tasks: the published files' names (`TASKS`), or the names the bundled Taskonomy truth gives them
(``normal`` is ``rgb2sfnorm``, `Task.truth`); an encoder whose task the truth does not rank (jigsaw,
egomotion, ...) is a source only. ``kwargs = {convention = "..."}`` names the input convention T_i
applies (`transforms.CONVENTIONS`); without it the image is only resized to 256² and mapped to [-1, 1].
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import torch
import torch.nn.functional as F
from torch import nn

from modelspace.errors import MissingWeightsError, ModelLoadError, ZooError, did_you_mean
from modelspace.models.sources import OwnConfig, reachable
from modelspace.models.spec import ModelSpec, register_source
from modelspace.models.transforms import CONVENTIONS

_log = logging.getLogger(__name__)

#: Where the published encoders are downloaded from (``file`` is the published file name).
URL = "https://github.com/alexsax/visual-prior/raw/networks/assets/pytorch/{file}"
#: The environment variable naming a folder of the published files.
WEIGHTS_DIR_ENV = "MODELSPACE_WEIGHTS_DIR"
#: Seconds an unreachable download host is not probed again.
UNREACHABLE_MEMO_S = 60.0
#: The encoder's input side and R's module.
INPUT_SIZE = 256
ENCODER = "relu1"

#: A checksum in a file name, as torch's hub writes it: ``name-<hex>.ext``.
_CHECKSUM = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class Task:
    """One published encoder of visualpriors' Taskonomy weights.

    Parameters
    ----------
    name : str
        The task's name in the published file names (``"normal"``).
    sha256 : str
        The published file's sha256 (hex), also in its name.
    truth : str, optional
        The name the bundled Taskonomy truth gives the task (``"rgb2sfnorm"``); None when the truth
        does not rank it.
    """

    name: str
    sha256: str
    truth: str | None = None

    @property
    def file(self) -> str:
        """The published file name."""
        return f"{self.name}_encoder-{self.sha256}.pth"

    @property
    def url(self) -> str:
        """Where the published file is downloaded from (`URL`)."""
        return URL.format(file=self.file)


#: The published encoders (visualpriors' ``TASKONOMY_PRETRAINED_WEIGHT_FILES``), with the truth's names
#: (its ``task_mapping``, which maps Taskonomy's own task names to the file names).
TASKS = {t.name: t for t in (
    Task("autoencoding", "e35146c09253720e97c0a7f8ee4e896ac931f5faa1449df003d81e6089ac6307", "autoencoder"),
    Task("class_object", "4a4e42dad58066039a0d2f9d128bb32e93a7e4aa52edb2d2a07bcdd1a6536c18", "class_1000"),
    Task("class_scene", "ad85764467cddafd98211313ceddebb98adf2a6bee2cedfe0b922a37ae65eaf8", "class_places"),
    Task("colorization", "5ed817acdd28d13e443d98ad15ebe1c3059a3252396a2dff6a2090f6f86616a5", "colorization"),
    Task("curvature", "3767cf5d06d9c6bca859631eb5a3c368d66abeb15542171b94188ffbe47d7571", "curvature"),
    Task("denoising", "b64cab95af4a2c565066a7e8effaf37d6586c3b9389b47fff9376478d849db38", "denoise"),
    Task("depth_euclidean", "88f18d41313de7dbc88314a7f0feec3023047303d94d73eb8622dc40334ef149", "rgb2mist"),
    Task("depth_zbuffer", "cc343a8ed622fd7ee3ce54398be8682bbbbfb5d11fa80e8d03a56a5ae4e11b09", "rgb2depth"),
    Task("edge_occlusion", "5ac3f3e918131f61e01fe95e49f462ae2fc56aa463f8d353ca84cd4e248b9c08", "edge3d"),
    Task("edge_texture", "be2d686a6a4dfebe968d16146a17176eba37e29f736d5cd9a714317c93718810", "edge2d"),
    Task("egomotion", "9aa647c34bf98f9e491e0b37890d77566f6ae35ccf41d9375c674511318d571c"),
    Task("fixated_pose", "78cf321518abc16f9f4782b9e5d4e8f5d6966c373d951928a26f872e55297567"),
    Task("inpainting", "bf96fbaaea9268a820a19a1d13dbf6af31798f8983c6d9203c00fab2d236a142", "inpainting_whole"),
    Task("jigsaw", "0c2b342c9080f8713c178b04aa6c581ed3a0112fecaf78edc4c04e0a90516e39"),
    Task("keypoints2d", "6b77695acff4c84091c484a7b128a1e28a7e9c36243eda278598f582cf667fe0", "keypoint2d"),
    Task("keypoints3d", "7e3f1ec97b82ae30030b7ea4fec2dc606b71497d8c0335d05f0be3dc909d000d", "keypoint3d"),
    Task("nonfixated_pose", "3433a600ca9ff384b9898e55d86a186d572c2ebbe4701489a373933e3cfd5b8b"),
    Task("normal", "f5e2c7737e4948e3b2a822f584892c342eaabbe66661576ba50db7cdd40561c5", "rgb2sfnorm"),
    Task("point_matching", "4bd2a6b2909d9998fabaf0278ab568f42f2b692a648e28555ede6c6cda5361f4"),
    Task("reshading", "de456246e171dc8407fb2951539aa60d75925ae0f1dbb43f110b7768398b36a6", "reshade"),
    Task("room_layout", "1e1662f43b834261464b1825227a04efba59b50cc8883bee9adc3ddafd4796c1", "room_layout"),
    Task("segment_semantic", "bb3007244520fc89cd111e099744a22b1e5c98cd83ed3f116fbff6376d220127", "segmentsemantic"),
    Task("segment_unsup25d", "7d12d2500c18c003ffc23943214f5dfd74932f0e3d03dde2c3a81ebc406e31a0", "segment25d"),
    Task("segment_unsup2d", "b679053a920e8bcabf0cd454606098ae85341e054080f2be29473971d4265964", "segment2d"),
    Task("vanishing_point", "afd2ae9b71d46a54efc5231b3e38ebc3e35bfab78cb0a78d9b75863a240b19a8", "vanishing_point"),
)}
_BY_TRUTH = {t.truth: t.name for t in TASKS.values() if t.truth is not None}


def task(name: str) -> Task:
    """The published encoder of a task, by its file name's task (``normal``) or the truth's (``rgb2sfnorm``).

    Parameters
    ----------
    name : str
        The task, as the ``taskonomy:TASK`` source gives it.

    Returns
    -------
    Task
        The published encoder.

    Raises
    ------
    ZooError
        No published encoder has that task; the message offers the closest names.
    """
    key = name if name in TASKS else _BY_TRUTH.get(name)
    if key is None:
        raise ZooError(f"field 'source': no published Taskonomy encoder for task {name!r}"
                       f"{did_you_mean(name, [*TASKS, *_BY_TRUTH])} (tasks: {', '.join(TASKS)})")
    return TASKS[key]


# ------------------------------------------------------------------------------------- architecture


class Bottleneck(nn.Module):
    """ResNet's bottleneck (1×1, 3×3 with the stride, 1×1 to 4× the width) with a residual sum.

    Parameters
    ----------
    inplanes : int
        Input channels.
    planes : int
        The block's width; it outputs ``4 · planes`` channels.
    stride : int, default 1
        The 3×3 convolution's stride.
    downsample : nn.Module, optional
        Applied to the shortcut (a projection, or a max pooling where the block strides); None: identity.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()  # not in place: a forward hook or an LRP rule may hold its input
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block.

        Parameters
        ----------
        x : torch.Tensor
            (B, inplanes, H, W).

        Returns
        -------
        torch.Tensor
            (B, 4 · planes, H / stride, W / stride), after the residual sum and a ReLU.
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """A stage of ``blocks`` bottlenecks, striding in its last block.

    The first block projects to ``4 · planes`` channels (1×1 convolution and batch norm on its shortcut),
    the last strides (a 1×1 max pooling on its shortcut).
    """
    width = planes * Bottleneck.expansion
    project = nn.Sequential(nn.Conv2d(inplanes, width, kernel_size=1, bias=False), nn.BatchNorm2d(width))
    layers = [Bottleneck(inplanes, planes, downsample=project if inplanes != width else None)]
    layers += [Bottleneck(width, planes) for _ in range(blocks - 2)]
    pool = nn.Sequential(nn.MaxPool2d(kernel_size=1, stride=stride)) if stride != 1 else None
    layers.append(Bottleneck(width, planes, stride=stride, downsample=pool))
    return nn.Sequential(*layers)


class TaskonomyEncoder(nn.Module):
    """A Taskonomy encoder: (B, 3, 256, 256) in [-1, 1] → (B, 8, 16, 16) (see the module docstring).

    ``relu1`` gives R, Taskonomy's encoder output; ``forward`` returns the group-normalised
    representation of the visual-priors port.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        self.layer1 = _stage(64, 64, 3, stride=2)
        self.layer2 = _stage(256, 128, 4, stride=2)
        self.layer3 = _stage(512, 256, 6, stride=1)
        self.layer4 = _stage(1024, 512, 3, stride=1)
        self.compress1 = nn.Conv2d(2048, 8, kernel_size=3, stride=1, padding=1, bias=False)
        self.compress_bn = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.groupnorm = nn.GroupNorm(8, 8, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the encoder, group normalisation included (R is read before it, at ``relu1``).

        Parameters
        ----------
        x : torch.Tensor
            (B, 3, 256, 256) in [-1, 1].

        Returns
        -------
        torch.Tensor
            (B, 8, 16, 16), the visual-priors port's group-normalised representation.
        """
        x = F.pad(x, (3, 3, 3, 3))  # TensorFlow's "SAME" padding of the 7×7 stride-2 stem, as the port writes it
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.groupnorm(self.relu1(self.compress_bn(self.compress1(x))))


# ------------------------------------------------------------------------------------------ weights


def weights_folder() -> Path | None:
    """The folder `WEIGHTS_DIR_ENV` names, or None.

    Returns
    -------
    Path or None
        The folder (``~`` expanded, not checked to exist), or None when the variable is unset or blank.
    """
    value = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _hub_folder() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _explicit_file(spec: ModelSpec) -> Path | None:
    """The entry's ``weights`` when it names a file (not a folder)."""
    if spec.weights is None:
        return None
    path = Path(spec.weights).expanduser()
    return None if path.is_dir() else path


def _folders(spec: ModelSpec) -> list[Path]:
    """The folders searched for the published file, in order (see the module docstring)."""
    given = Path(spec.weights).expanduser() if spec.weights is not None else weights_folder()
    return ([given] if given is not None else []) + [_hub_folder()]


def _local(spec: ModelSpec, t: Task) -> Path | None:
    """The weights file of ``spec`` on this machine, or None."""
    explicit = _explicit_file(spec)
    if explicit is not None:
        return explicit if explicit.is_file() else None
    return next((folder / t.file for folder in _folders(spec) if (folder / t.file).is_file()), None)


_unreachable: dict[str, float] = {}  # host → time.monotonic() of its failed probe


def _can_download(url: str) -> bool:
    """Whether the host of ``url`` can be reached: probed once, a failure remembered `UNREACHABLE_MEMO_S`."""
    host = urlsplit(url).hostname or ""
    failed = _unreachable.get(host)
    if failed is not None and time.monotonic() - failed < UNREACHABLE_MEMO_S:
        return False
    if reachable(url):
        _unreachable.pop(host, None)
        return True
    _unreachable[host] = time.monotonic()
    return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, url: str | None = None) -> None:
    """Check a weights file against the sha256 (or its prefix) in its name, as torch's hub names them.

    A file whose name carries no checksum is loaded unverified, with a warning in the log.

    Parameters
    ----------
    path : Path
        The weights file.
    url : str, optional
        Where the published file comes from, offered in the error message.

    Raises
    ------
    MissingWeightsError
        The file's sha256 is not the one its name gives: damaged, or not the published file.
    """
    named = _CHECKSUM.search(path.name)
    if named is None:
        _log.warning("weights file %s: its name carries no checksum (name-<sha256>.pth), so it is loaded "
                     "unverified", path)
        return
    actual = _sha256(path)
    if not actual.startswith(named.group(1)):
        again = f"; fetch it again from {url}" if url else ""
        raise MissingWeightsError(f"weights file {path}: its sha256 is {actual}, but its name says "
                                  f"{named.group(1)}: the file is damaged or not the published one, and was "
                                  f"not loaded{again}")


def read_weights(path: Path, url: str | None = None) -> dict:
    """The state dict of a published encoder file, read with ``weights_only`` after `verify`.

    Parameters
    ----------
    path : Path
        The weights file.
    url : str, optional
        Where the published file comes from, offered in the error message of `verify`.

    Returns
    -------
    dict
        The state dict: the file's ``"state_dict"``, or the file's whole content.

    Raises
    ------
    MissingWeightsError
        The file's sha256 is not the one its name gives (`verify`).
    ModelLoadError
        The file cannot be read as tensors, or holds no state dict.
    """
    verify(path, url)
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a pickle of more than tensors, or not a torch file
        raise ModelLoadError(f"weights file {path} cannot be read as tensors (torch.load with "
                             f"weights_only=True): {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    state = content.get("state_dict", content) if isinstance(content, dict) else None
    if not isinstance(state, dict):
        raise ModelLoadError(f"weights file {path} holds no state dict (a dict of tensors, or one under 'state_dict')")
    return state


def _download(t: Task) -> Path:
    """The published file of ``t``, downloaded into torch's hub cache (its sha256 checked as it comes)."""
    target = _hub_folder() / t.file
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(t.url, str(target), hash_prefix=t.sha256, progress=True)
    except Exception as exc:  # noqa: BLE001 - any failure of the network or the hub leaves the weights missing
        raise MissingWeightsError(f"could not download {t.url} to {target}: {type(exc).__name__}: {exc}") from exc
    return target


def _missing(spec: ModelSpec, t: Task) -> str:
    """What to do about a missing weights file: which file, where from, where to put it."""
    explicit = _explicit_file(spec)
    if explicit is not None:
        return (f"field 'weights': file not found: {explicit}; the published weights of Taskonomy encoder "
                f"{t.name!r} are {t.file}, from {t.url}")
    looked = ", ".join(str(folder) for folder in _folders(spec))
    return (f"field 'source': the weights of Taskonomy encoder {t.name!r}, {t.file}, are not in {looked}, and "
            f"{urlsplit(t.url).hostname} cannot be reached to download them: fetch {t.url} into a folder and "
            f"give it as --weights-dir, as {WEIGHTS_DIR_ENV}, or as the entry's weights")


# ------------------------------------------------------------------------------------------- source


def _convention(spec: ModelSpec) -> str | None:
    """The input convention the entry's ``kwargs`` names (the only keyword a Taskonomy encoder takes)."""
    kwargs = spec.kwargs_dict()
    unknown = sorted(set(kwargs) - {"convention"})
    if unknown:
        raise ZooError(f"field 'kwargs': a Taskonomy encoder takes only 'convention', not {unknown[0]!r}")
    convention = kwargs.get("convention")
    if convention is not None and convention not in CONVENTIONS:
        raise ZooError(f"field 'kwargs': convention {convention!r} is not one of {', '.join(sorted(CONVENTIONS))}"
                       f"{did_you_mean(str(convention), CONVENTIONS)}")
    return convention


def _check(spec: ModelSpec, ref: str) -> None:
    """The task has a published encoder, the kwargs are valid, and the weights are here or can be downloaded."""
    t = task(ref)
    _convention(spec)
    folder = weights_folder()
    if spec.weights is None and folder is not None and not folder.is_dir():
        raise ZooError(f"{WEIGHTS_DIR_ENV}={folder}: no such folder")
    explicit = _explicit_file(spec)
    other = next((o for o in TASKS.values() if explicit is not None and o.file == explicit.name), t)
    if other is not t:
        raise ZooError(f"field 'weights': {explicit.name} is the published {other.name!r} encoder, "
                       f"not the {t.name!r} one that the source names")
    if spec.pretrained and _local(spec, t) is None and (explicit is not None or not _can_download(t.url)):
        raise ZooError(_missing(spec, t))


def _downloads(spec: ModelSpec, ref: str) -> list[str]:
    """The published file's URL when the weights are not on this machine."""
    try:
        t = task(ref)
    except ZooError:  # `check_sources` says so
        return []
    return [t.url] if spec.pretrained and _local(spec, t) is None else []


@register_source("taskonomy", check=_check, downloads=_downloads)
def load_taskonomy(spec: ModelSpec, ref: str) -> tuple[nn.Module, str, OwnConfig]:
    """``taskonomy:TASK``: a `TaskonomyEncoder` with the published weights.

    R is at ``relu1``, the input 256² in [-1, 1] with the entry's convention. With ``pretrained = false``
    its weights are random, drawn from a seed of the task's own (the first 32 bits of its published
    sha256). Missing weights are downloaded into torch's hub cache.

    Parameters
    ----------
    spec : ModelSpec
        The zoo entry (its ``weights``, ``pretrained`` and ``kwargs``).
    ref : str
        The task, the part of the source after ``taskonomy:``.

    Returns
    -------
    tuple of (nn.Module, str, OwnConfig)
        The encoder, R's module name (`ENCODER`), and its stated preprocessing and convention.

    Raises
    ------
    ZooError
        No published encoder for the task, or ``kwargs`` other than a known ``convention``.
    MissingWeightsError
        The entry's ``weights`` file is missing, the download fails, or the file's sha256 is not the
        one its name gives.
    ModelLoadError
        The file cannot be read as tensors, or is not a Taskonomy encoder's state dict.
    """
    t = task(ref)
    convention = _convention(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(t.sha256[:8], 16))  # random weights of the task's own: 20 alike would agree on everything
        module = TaskonomyEncoder()
    if spec.pretrained:
        path = _local(spec, t)
        if path is None:
            if _explicit_file(spec) is not None:
                raise MissingWeightsError(_missing(spec, t))
            path = _download(t)
        try:
            module.load_state_dict(read_weights(path, t.url), strict=True)
        except RuntimeError as exc:  # keys or shapes that are not a Taskonomy encoder's
            raise ModelLoadError(f"weights file {path} is not a Taskonomy encoder's state dict: {exc}") from exc
    origin = "Taskonomy encoder (256² in [-1, 1])"
    stated = {"input_size": ((INPUT_SIZE, INPUT_SIZE), origin), "mean": ((0.5, 0.5, 0.5), origin),
              "std": ((0.5, 0.5, 0.5), origin), "interpolation": ("bilinear", origin)}
    return module, ENCODER, OwnConfig(stated, convention=convention)
