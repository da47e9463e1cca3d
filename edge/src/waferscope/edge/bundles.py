"""The bundle shipped with the agent, and loading "a folder, or else the shipped one".

Verification itself is protocols' (:func:`waferscope.protocols.inference.load_bundle`).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from waferscope.protocols.inference import Bundle
from waferscope.protocols.inference import load_bundle as load_bundle_folder

DEFAULT_BUNDLE_PACKAGE = "waferscope.edge"
DEFAULT_BUNDLE_DIR = "bundles/default"


def default_bundle_path() -> Path:
    """The bundle shipped inside the agent package (may be absent in a development checkout)."""
    return Path(str(files(DEFAULT_BUNDLE_PACKAGE).joinpath(DEFAULT_BUNDLE_DIR)))


def load_bundle(folder: Path | None = None) -> Bundle:
    """Verify and load a bundle folder (``None``: the default bundle); BundleError if bad."""
    return load_bundle_folder(default_bundle_path() if folder is None else folder)
