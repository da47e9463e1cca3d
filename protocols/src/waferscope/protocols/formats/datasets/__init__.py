"""The labelled wafer-map datasets (WM-811K, MixedWM38 .npz): the reader.

Modules whose names start with ``_`` are internal to this family; import the reader
and writer modules (or use :func:`waferscope.protocols.formats.get_format`)."""
