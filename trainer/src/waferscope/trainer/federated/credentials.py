"""The federation's credentials (TLS CA, SuperLink certificate, node keys): defined in protocols.

Kept as an import path of the trainer; the one definition is
:mod:`waferscope.protocols.federation_credentials`, which the hub uses to provision nodes.
"""

from __future__ import annotations

from waferscope.protocols.federation_credentials import (
    VALIDITY,
    NodeKeys,
    TlsFiles,
    make_node_keys,
    make_tls,
)

__all__ = ["VALIDITY", "NodeKeys", "TlsFiles", "make_node_keys", "make_tls"]
