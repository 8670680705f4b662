"""Models on the Hugging Face Hub: ``hf:OWNER/NAME[@REVISION]`` names a repository's ``pytorch_model.bin``.

Optional: needs ``huggingface_hub`` (``pip install 'dnnsep[hub]'``), imported only when a reference
is loaded.  The file is downloaded into huggingface_hub's cache (``HF_HOME``, ``HF_HUB_CACHE``) and
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
INSTALL = "pip install 'dnnsep[hub]'"
_REFERENCE = re.compile(r"hf:(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?")

# what each of huggingface_hub's errors means here (matched by class name along its MRO: subclasses included)
_ERRORS = {
    "GatedRepoError": "a gated repository: accept its terms on the Hub and log in (hf auth login)",
    "RepositoryNotFoundError": "no such repository on the Hub (or it is private: log in with hf auth login)",
    "RevisionNotFoundError": "the repository has no such revision",
    "RemoteEntryNotFoundError": f"the repository holds no {FILE_NAME}",
    "OfflineModeIsEnabled": "not in the local cache, and HF_HUB_OFFLINE is set",
    "LocalEntryNotFoundError": "not in the local cache, and the Hub cannot be reached",
    "EntryNotFoundError": f"the repository holds no {FILE_NAME}",
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
    """The local path of the reference's ``pytorch_model.bin``, downloaded or from the cache."""
    repo, revision = parse(reference)
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError:
        raise DnnsepError(f"{reference}: loading from the Hugging Face Hub needs huggingface_hub: {INSTALL}") from None
    try:
        return Path(hf_hub_download(repo, FILE_NAME, revision=revision))
    except Exception as err:  # huggingface_hub's own, or the network's
        names = [cls.__name__ for cls in type(err).__mro__]
        if "LocalEntryNotFoundError" in names and getattr(constants, "HF_HUB_OFFLINE", False):
            names.insert(0, "OfflineModeIsEnabled")
        what = next((_ERRORS[name] for name in names if name in _ERRORS), None)  # the most specific
        if what is None:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            what = f"cannot download it ({_printable(first)})"
        raise CheckpointError(f"{reference}: {what}") from None


def _printable(text: str, limit: int = 200) -> str:
    return "".join(c if c.isprintable() else "?" for c in str(text))[:limit]
