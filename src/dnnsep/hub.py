"""Models on the Hugging Face Hub: ``hf:OWNER/NAME[@REVISION]`` names a repository's model.

The repository holds a ``pytorch_model.bin`` (asteroid's, or a dnnsep model shared with
:mod:`dnnsep.bin.share`) or a SpeechBrain separator (``hyperparams.yaml`` and its ``*.ckpt``).

Optional: needs ``huggingface_hub`` (``pip install 'dnnsep[hub]'``), imported only when a reference
is loaded.  The files are downloaded into huggingface_hub's cache (``HF_HOME``, ``HF_HUB_CACHE``) and
then loaded as any local file (``weights_only``, converted if asteroid's); with ``HF_HUB_OFFLINE=1`` it
comes from the cache.  ``HF_ENDPOINT`` names another hub.  Every failure is one line.

>>> parse("hf:mpariente/DPRNNTasNet-ks2_WHAM_sepclean@7b1ea8f")
('mpariente/DPRNNTasNet-ks2_WHAM_sepclean', '7b1ea8f')
>>> parse("hf:JorisCos/ConvTasNet_Libri2Mix_sepclean_16k")
('JorisCos/ConvTasNet_Libri2Mix_sepclean_16k', None)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import CheckpointError, DnnsepError

PREFIX = "hf:"
FILE_NAME = "pytorch_model.bin"
# what a repository may hold, tried in turn: the first file of each tells which it is
LAYOUTS = (
    (FILE_NAME,),
    ("hyperparams.yaml", "encoder.ckpt", "masknet.ckpt", "decoder.ckpt"),
)  # asteroid/dnnsep, SpeechBrain
CARD = ("README.md",)  # the model card, fetched with a SpeechBrain separator's files (its licence)
INSTALL = "pip install 'dnnsep[hub]'"
_REFERENCE = re.compile(r"hf:(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?")

# what each of huggingface_hub's errors means here (matched by class name along its MRO: subclasses included)
_ERRORS = {
    "GatedRepoError": "a gated repository: accept its terms on the Hub and log in (hf auth login)",
    "RepositoryNotFoundError": "no such repository on the Hub (or it is private: log in with hf auth login)",
    "RevisionNotFoundError": "the repository has no such revision",
    "RemoteEntryNotFoundError": f"the repository holds no model ({FILE_NAME}, or SpeechBrain's hyperparams.yaml)",
    "OfflineModeIsEnabled": "not in the local cache, and HF_HUB_OFFLINE is set",
    "LocalEntryNotFoundError": "not in the local cache, and the Hub cannot be reached",
    "EntryNotFoundError": f"the repository holds no model ({FILE_NAME}, or SpeechBrain's hyperparams.yaml)",
}


def is_reference(model: str | os.PathLike) -> bool:
    """Whether ``model`` is an ``hf:`` reference (a string; a local path never is)."""
    return isinstance(model, str) and model.startswith(PREFIX)


def parse(reference: str) -> tuple[str, str | None]:
    """``(repo_id, revision or None)`` of ``hf:OWNER/NAME[@REVISION]``; a DnnsepError if malformed."""
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        raise DnnsepError(f"{_printable(reference)}: not a Hub reference; expected hf:OWNER/NAME[@REVISION]")
    return match.group("repo"), match.group("revision")


def download(reference: str) -> Path:
    """The local path of the reference's model, downloaded or from the cache: its ``pytorch_model.bin``
    (asteroid's, or a dnnsep model shared with ``dnnsep.bin.share``), or the folder of a SpeechBrain
    separator's files (with its model card, for the licence, where the repository has one)."""
    repo, revision = parse(reference)
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError:
        raise DnnsepError(f"{reference}: loading from the Hugging Face Hub needs huggingface_hub: {INSTALL}") from None
    offline = bool(getattr(constants, "HF_HUB_OFFLINE", False))
    absent: Exception | None = None
    for layout in LAYOUTS:
        try:
            first = Path(hf_hub_download(repo, layout[0], revision=revision))
        except Exception as err:  # huggingface_hub's own, or the network's
            if "EntryNotFoundError" not in _names(err):  # the repository, revision or network: no use trying on
                raise CheckpointError(f"{reference}: {_explain(err, offline)}") from None
            absent = err
            continue
        for name in layout[1:]:
            try:
                hf_hub_download(repo, name, revision=revision)
            except Exception as err:
                raise CheckpointError(f"{reference}: {name}: {_explain(err, offline)}") from None
        if len(layout) > 1:
            for name in CARD:
                try:
                    hf_hub_download(repo, name, revision=revision)
                except Exception:  # noqa: S112 -- a model card is optional
                    continue
        return first if len(layout) == 1 else first.parent
    raise CheckpointError(f"{reference}: {_explain(absent, offline)}")


def _names(err: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(err).__mro__]


def _explain(err: BaseException | None, offline: bool) -> str:
    """What one of huggingface_hub's errors means here, in a few words."""
    names = _names(err)
    if "LocalEntryNotFoundError" in names and offline:
        names.insert(0, "OfflineModeIsEnabled")
    what = next((_ERRORS[name] for name in names if name in _ERRORS), None)  # the most specific
    if what is None:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        what = f"cannot download it ({_printable(first)})"
    return what


def _printable(text: str, limit: int = 200) -> str:
    return "".join(c if c.isprintable() else "?" for c in str(text))[:limit]
