"""TSK/UTL prober maps: the reader, the writer, and the internal header layout.

Modules whose names start with ``_`` are internal to this family; import the reader
and writer modules (or use :func:`waferscope.protocols.formats.get_format`)."""
