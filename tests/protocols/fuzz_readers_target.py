"""Atheris (libFuzzer) target over every format reader; run as a script by test_fuzz_readers.py.

The first byte of each input picks the reader (``data[0] % len(formats)``), the rest is the file's
content. An input must either read (every wafer consumed) or raise a ``WaferscopeError``; anything
else escapes to libFuzzer, which saves the input under ``-artifact_prefix`` and exits non-zero.

    python fuzz_readers_target.py CORPUS_DIR -runs=N -max_total_time=S -artifact_prefix=DIR/
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["waferscope.protocols"]):
    from waferscope.protocols.errors import WaferscopeError
    from waferscope.protocols.formats import Source, list_formats, read_maps

    # the readers are imported on first listing: inside the block, so they are instrumented too
    FORMATS = tuple(fmt.name for fmt in list_formats())


def read_one(data: bytes) -> None:
    if not data:
        return
    fmt = FORMATS[data[0] % len(FORMATS)]
    try:
        for _ in read_maps(Source.from_bytes(data[1:], name=f"fuzz.{fmt}"), format=fmt):
            pass
    except WaferscopeError:
        pass


def main() -> None:
    print("formats:", " ".join(FORMATS), flush=True)
    atheris.Setup(sys.argv, read_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
