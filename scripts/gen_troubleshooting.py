#!/usr/bin/env python3
"""Write docs/troubleshooting.md from the errors the code raises.

The page is generated so that it cannot drift from the code. This script reads the sources of
protocols, edge, hub, appliance and trainer with ``ast`` (nothing is imported) and finds

- every exception class, with the messages it is raised with;
- the edge's outcome codes for files and wafers (``format_error``, ``duplicate``, ``queue_full``,
  ...) and job statuses, as the worker, the hot folder, the gRPC ingest and the shared inference
  pipeline write them;
- the ``SubmitResponse`` / ``WaferOutcome`` statuses and any gRPC status code the TesterIngest
  service sets itself;
- the HTTP error statuses of the hub's web app and of the edge panel;
- the reasons the edge and hub configuration loaders give.

What each one means and what to do lives in the tables below (``ERRORS``, ``CODES``, ...), one
entry per class, code or status, next to nothing else. The script fails (exit status 1) when the
code has a class, code or status without an entry, so a new error cannot go undocumented, and
when an entry names something the code no longer has. The common situations (``SITUATIONS``)
quote messages and log lines; each quote is checked to still be in the file it comes from.

    python scripts/gen_troubleshooting.py           # write docs/troubleshooting.md (just docs)
    python scripts/gen_troubleshooting.py --check   # exit 1 when the page is stale
    python scripts/gen_troubleshooting.py --stdout  # print the page
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = Path("docs") / "troubleshooting.md"
PARTS = ("protocols", "edge", "hub", "appliance", "trainer")
BUILTIN_BASES = frozenset(
    {
        "BaseException",
        "Exception",
        "ValueError",
        "KeyError",
        "LookupError",
        "RuntimeError",
        "OSError",
        "TypeError",
        "HTTPException",
    }
)
# where the edge's outcome codes and statuses are written
CODE_FILES = (
    "edge/src/waferscope/edge/worker.py",
    "edge/src/waferscope/edge/jobs.py",
    "edge/src/waferscope/edge/hot_folder.py",
    "edge/src/waferscope/edge/grpc_ingest.py",
    "protocols/src/waferscope/protocols/inference/pipeline.py",
)
GRPC_FILE = "edge/src/waferscope/edge/grpc_ingest.py"
HTTP_FOLDERS = ("hub/src/waferscope/hub/web", "edge/src/waferscope/edge/panel")
CONFIG_KERNEL = (
    "protocols/src/waferscope/protocols/settings/loader.py",
    "protocols/src/waferscope/protocols/settings/sections.py",
)
CONFIG_FILES = {
    "edge": (
        *CONFIG_KERNEL,
        "edge/src/waferscope/edge/config/__init__.py",
        "edge/src/waferscope/edge/config/ingest.py",
        "edge/src/waferscope/edge/config/alerts.py",
    ),
    "hub": (
        *CONFIG_KERNEL,
        "hub/src/waferscope/hub/config/__init__.py",
        "hub/src/waferscope/hub/config/storage.py",
        "hub/src/waferscope/hub/config/alerts.py",
    ),
}
LITESTAR_STATUS = {
    "ClientException": 400,
    "ValidationException": 400,
    "NotAuthorizedException": 401,
    "PermissionDeniedException": 403,
    "NotFoundException": 404,
    "MethodNotAllowedException": 405,
    "TooManyRequestsException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
MESSAGE_KEYWORDS = ("reason", "detail", "message")
MESSAGE_ARG_INDEX = {"WaferRejectedError": 1}  # (code, message)


@dataclass(frozen=True)
class Entry:
    """What a reader needs about one error: its message, where it appears, meaning, remedy."""

    shape: str
    shows: str
    means: str
    todo: str


@dataclass(frozen=True)
class Situation:
    title: str
    intro: str
    items: tuple[str, ...]
    evidence: tuple[tuple[str, str], ...]  # (file, text that must be in it)


RELEASE_REFUSAL_SHOWN = (
    "`waferscope release verify|sign|keygen`: `waferscope: error: <message>`, exit status"
    " 1. Edge install (`waferscope edge install-release`, a deploy command): the release "
    "is refused, the running engine keeps serving, a `release_refused` alert names the "
    "reason."
)
"""Where every release refusal appears (the same for each reason)."""


# =========================================================================== the entries
# Exception classes, keyed "<part>.<ClassName>".
ERRORS: dict[str, Entry] = {
    # ------------------------------------------------------------------ protocols
    "protocols.WaferscopeError": Entry(
        shape="One line naming what went wrong and where; the subclasses below add their own "
        "shape.",
        shows="Any `waferscope` command: `waferscope: error: <message>` on stderr, exit status 1 "
        "(the umbrella CLI catches every `WaferscopeError`). `waferscope demo`: "
        "`demo: <message>`, exit status 1.",
        means="The base class of every error waferscope raises on purpose. A few one-off checks "
        "raise it directly (messages below): `waferscope convert` on a file without wafers, the "
        "trainer's run and TensorRT checks.",
        todo="Read the message: it names the file, option or setting concerned. "
        "`waferscope: internal error: <Type>: <message>` (exit status 70) instead means an "
        "exception the code did not expect: a bug, or a situation the code does not recognise "
        "(see *A port is in use*).",
    ),
    "protocols.FormatError": Entry(
        shape="`<source>: line <n>, byte <offset>, <record>: <format> <reason>` (line, byte "
        "and record only where known).",
        shows="CLI (`inspect`, `convert`, `classify`, `simulate-tester`): `waferscope: error: "
        "...`, exit status 1; the other files are still processed. Edge: the file goes to "
        "`rejected/` with `error: format_error: ...` (or `truncated`, `unknown_format`) and a "
        "`where:` line in its `.reason.txt`; over gRPC the same code in `SubmitResponse.error`; "
        "a `parse_failure` alert. Hub upload: HTTP 422, or the error line of the upload page.",
        means="A reader could not read the content as the format it detected (or was told with "
        "`--format` / `format_hint`). When an STDF file holds good wafers before the corrupt "
        "part, the CLI prints those wafers and then the error.",
        todo="Look at the named line, byte or record. Usual causes: a copy taken while the "
        "tester was still writing (use rename-in, see *A file stays in the hot folder*), a "
        "transfer in text mode (line-ending conversion changes binary files), a tester dialect "
        "the reader does not know (the reader's module docstring and `docs/formats/` list the "
        "readings it chose). `waferscope inspect FILE` reproduces the error off-line.",
    ),
    "protocols.ConfigError": Entry(
        shape="`<file>:<line>: <key>: <reason>` (or `<ENV_VARIABLE>: <key>: <reason>`), every "
        "problem at once; the reasons are listed under *Configuration errors*.",
        shows="`waferscope edge validate-config FILE`, `waferscope hub validate-config FILE`: "
        "one problem per line, exit status 1. `waferscope edge run`: `waferscope: error: "
        "<problem>; <problem>`, exit status 1. `waferscope hub run`, `ingest`, `migrate`, "
        "`user`, ...: one problem per line, exit status 2, before anything starts.",
        means="The edge or hub configuration cannot be used: a syntax error, an unknown key "
        "(usually a typo), a value out of range, a missing `device_id` (edge). Both parts read "
        "their files with the same loader (`waferscope.protocols.settings`).",
        todo="Fix the named line; `docs/edge-config.md` and `docs/hub-config.md` list every key "
        "with its range.",
    ),
    "protocols.UnknownFormatError": Entry(
        shape="`<source>: byte 0: content matches no known wafer-map format (<formats>)`, "
        "`<source>: byte 0: the input is empty`; for a format named by an option: "
        "`no format named '<name>' (known: ...)`, `format '<name>' has no writer`.",
        shows="As `FormatError`; the edge's code is `unknown_format`.",
        means="No reader recognised the first bytes (formats are detected by content, never by "
        "file name), the input is empty, or `--format`, `--to` or `format_hint` names a format "
        "this installation does not have.",
        todo="`waferscope formats` lists what this installation reads and writes, in detection "
        "order. Check that the file is a wafer map at all (not a datalog, a summary, or an "
        "archive: gzip, bzip2 and xz are undone, other archives are not) and not empty. A "
        "third-party reader must be installed in the same environment (entry-point group "
        "`waferscope.formats`).",
    ),
    "protocols.DecompressionLimitError": Entry(
        shape="`<source>: byte <offset>: <gzip|bzip2|xz> expands past the <n>-byte limit for "
        "decompressed input`, or `... expands <r> times (<n> bytes from <m>), past the 200x "
        "limit for compressed input`.",
        shows="As `FormatError` (the edge's code is `format_error`, a `parse_failure` alert).",
        means="A gzip, bzip2 or xz input grows beyond 2 GiB when undone, or beyond 200 times "
        "its compressed size once past 64 MiB: a decompression bomb, or a file that is mostly "
        "one repeated byte. Reading stops there, before memory or disk run out. Real tester "
        "files compress 3 to 30 times.",
        todo="If the file is genuine, send it uncompressed or split it; the limits are "
        "`MAX_DECOMPRESSED_BYTES`, `MAX_RATIO` and `RATIO_FLOOR_BYTES` in "
        "`waferscope.protocols.formats.base` (per input: `Source(..., max_decompressed=, "
        "max_ratio=)`). Otherwise find who produced it: a tester does not write such files.",
    ),
    "protocols.TruncatedError": Entry(
        shape="As `FormatError`: `<source>: byte <offset>: <format> <reason>`.",
        shows="As `FormatError`; the edge's code is `truncated` (a `parse_failure` alert).",
        means="The input ends inside a record or structure: a copy taken while the tester was "
        "still writing, an interrupted transfer, a cut compressed stream. An STDF file cut "
        "after some parts were tested is not an error: its wafers are read and the one in "
        "progress is flagged partial.",
        todo="Deliver the complete file again (its bytes differ from the cut copy, so it is not "
        "a duplicate). Make the tester write under a temporary name and rename when done.",
    ),
    "protocols.WaferMapError": Entry(
        shape="One line naming the column or field, e.g. `die column 'x' has 12 values, "
        "expected 10`.",
        shows="CLI: `waferscope: error: ...`. Edge: `format_error` with `<file name>: "
        "<message>`. Writing (convert, simulator): the file is not written.",
        means="A wafer map was built from inconsistent values: a reader met contradictory "
        "content (a negative bin in a CSV row, malformed WaferMap JSON), or a writer cannot "
        "store the map (STDF keeps coordinates in -32767..32767 and records under 64 KiB).",
        todo="From a file: treat it like a `FormatError`, the content is inconsistent. From "
        "your own code building a `WaferMap`: the message names the column or field.",
    ),
    "protocols.EncodingError": Entry(
        shape="`unknown model-input encoding version <n> (this build knows v1)`, "
        "`encoding size must be <min>..<max>, got <n>`, `model expects encoding v<a> at <n>px; "
        "this pipeline produces v<b> at <m>px`, ...",
        shows="Loading a bundle: wrapped into a `BundleError` (`bundle <version>: ...`), so "
        "the edge refuses the bundle. Library calls: as is.",
        means="A bundle declares a model-input encoding this code does not implement (another "
        "version, size or channel list), or a map that is not 2-D was given to the encoder.",
        todo="Use a bundle made for this version of waferscope (`waferscope edge check-bundle "
        "DIR` shows the encoding it declares), or update the agent.",
    ),
    "protocols.TopicError": Entry(
        shape="`<what> '<value>' contains '<char>', <meaning>`, `<what> is empty`, "
        "`topic '<t>' does not start with waferscope/...`, ...",
        shows="Configuration: a `device_id` or `site` the loader refuses (`<file>:<line>: "
        "device_id: ...`); hub user names (`waferscope hub user add`: `error: ...`). Hub "
        "ingest: a message on a topic that is no waferscope topic becomes a dead letter.",
        means="An id that cannot be an MQTT topic level (empty, too long, `/`, `+`, `#`, NUL, a "
        "leading `$`), or a topic that is not one of waferscope's.",
        todo="Use letters, digits, `.`, `_` and `-` for device ids, sites and user names. Dead "
        "letters: something else publishes under the hub's subscription; the dead letter "
        "names the topic and device level.",
    ),
    "protocols.SimulatorError": Entry(
        shape="`<where>: <reason>` (where: the file, folder or option), e.g. "
        "`<path>: no such file or folder`, `format: cannot write format 'x' (choose from: ...)`.",
        shows="`waferscope simulate-tester`: `waferscope: error: ...`, exit status 1, before "
        "any file is written. `waferscope demo`: `demo: ...`, exit status 1.",
        means="The tester simulator cannot do what it was asked: an unknown output format, a "
        "missing source or one without wafer maps, a `--pattern` no wafer carries, an output "
        "folder it cannot write into. A source with corrupt content raises the reader's "
        "`FormatError` instead.",
        todo="Fix the named option or path; `docs/simulator.md` lists the options. "
        "`waferscope formats` lists the formats it can write.",
    ),
    "protocols.MessageError": Entry(
        shape="`<topic>: bad <MessageType> payload: <reason>`.",
        shows="Hub: the message becomes a dead letter (table `dead_letters`, "
        "`GET /api/v1/dead-letters` for engineers), the log line `dead letter from device "
        "'<id>' on <topic>: <reason>`, the metric `waferscope_hub_ingest_malformed_total`; "
        "it is acknowledged and never stops the ingest.",
        means="A payload that is not a waferscope message: not UTF-8 or JSON, wrong field "
        "types, a missing or non-UUID id, a `device_id` that contradicts the topic, a compact "
        "map whose bytes do not fit its shape, over the size limit.",
        todo="Find the publisher from the topic's device level: an agent of another version "
        "(compare `schema_version` and `docs/messages.md`) or a foreign client publishing "
        "under `waferscope/v1/`. Restrict publishing with per-edge credentials "
        "(`waferscope hub edge-credentials`).",
    ),
    "protocols.RunnerUnavailableError": Entry(
        shape="`the TensorRT runner needs <library> (<import error>)`, `no CUDA device is "
        "visible`, `onnxruntime offers no execution provider`, `CUDA call failed: <error>`.",
        shows="Edge start: `waferscope: error: ...`, exit status 1, the agent does not run. "
        "`waferscope classify --runner tensorrt`: the same line.",
        means="The backend chosen in `model.runner` cannot run on this machine: TensorRT or "
        "cuda-python missing, no GPU visible, a broken onnxruntime install.",
        todo='Use `model.runner = "onnxruntime"` (CPU always works; CUDA / TensorRT '
        "execution providers are used when installed), or install the missing library. "
        "`nvidia-smi` shows whether a GPU is visible.",
    ),
    "protocols.InferenceExtraMissingError": Entry(
        shape="`onnxruntime is not installed (<import error>); install the 'inference' extra: "
        "pip install 'waferscope-protocols[inference]'`.",
        shows="Whatever tried to load a model: `waferscope: error: ...`; hub uploads: HTTP 422.",
        means="The protocols part was installed without its `inference` extra, so there is no "
        "onnxruntime. The edge and the hub depend on the extra; a hand-made environment may "
        "lack it.",
        todo="`pip install 'waferscope-protocols[inference]'` (or reinstall the edge / hub "
        "part, which pulls it).",
    ),
    "protocols.WaferRejectedError": Entry(
        shape="`<source> wafer #<index>: <reason>`, with a code (`invalid_wafer`).",
        shows="Edge: a `wafer #<i>: invalid_wafer: ...` line in the file's `.reason.txt` (file "
        "`partial` in `done/`, or `rejected/` when no wafer is left), `WaferOutcome.error` over "
        "gRPC. `waferscope classify`: `waferscope: error: ...` for that wafer, the others are "
        "classified. Hub upload: the wafer is stored unclassified, with the reason.",
        means="One wafer of a file cannot be classified (it holds no dies); the other wafers "
        "of the file can.",
        todo="Usually a wafer record the tester wrote without parts (an aborted wafer). "
        "Nothing to do unless every file shows it.",
    ),
    "protocols.FieldError": Entry(
        shape="`field <name> runs past the end of the record`.",
        shows="Never on its own: the STDF reader turns it into a `FormatError` naming the record.",
        means="An STDF field longer than its record (internal to the STDF reader).",
        todo="See `FormatError`.",
    ),
    "protocols._TooManyElementsError": Entry(
        shape="No message.",
        shows="Never on its own: the SEMI E142 reader turns it into a `FormatError`.",
        means="An E142 document with more XML elements than the reader's limit (a guard "
        "against oversized or hostile XML).",
        todo="See `FormatError`.",
    ),
    "protocols.ReleaseError": Entry(
        shape="`<release file>: <reason>`; the subclasses below name each reason.",
        shows=RELEASE_REFUSAL_SHOWN,
        means=(
            "The base class of release refusals; raised directly for a bad `sign` request "
            "(version below 1, an expiry in the past, an unreadable delegation file)."
        ),
        todo="Read the message; fix the option or file it names.",
    ),
    "protocols.ReleaseFormatError": Entry(
        shape=(
            "`<file>: truncated or corrupt release file (...)`, `<file>: expected release.json "
            "next, found ...`, `<file>: release.json is <n> bytes, over the 1048576-byte limit`, "
            "`<file>: file name '<p>' is not a safe relative path`, `<file>: bundle/<f> is a link"
            " or special file`."
        ),
        shows=RELEASE_REFUSAL_SHOWN,
        means=(
            "The file is not a well-formed release: not a plain tar, cut short (an interrupted "
            "copy or download), an envelope that is not JSON or is oversized, a file name that "
            "escapes the bundle (`..`, absolute), a link, or too many files. Nothing is unpacked."
        ),
        todo=(
            "Copy or download the release again and compare its size with the source; a release "
            "built by `waferscope release sign` never has links or unsafe names, so one that does"
            " was not made by it."
        ),
    ),
    "protocols.ReleaseSignatureError": Entry(
        shape=(
            "`<file>: release.json: the ed25519 signature by key <id> does not verify`, `<file>: "
            "... carries no signature`."
        ),
        shows=RELEASE_REFUSAL_SHOWN,
        means=(
            "The signed manifest (or the key delegation) was altered after signing, or the "
            "signature was forged."
        ),
        todo=(
            "Do not install it. Re-sign the bundle with `waferscope release sign` from a trusted "
            "build; find out who changed the file."
        ),
    ),
    "protocols.UnknownReleaseKeyError": Entry(
        shape=(
            "`<file>: delegation.json: signed by unknown key(s) <id>`, `<file>: release.json: "
            "signed by unknown key(s) <id>`, `<file>: key <id> may sign channels [...], not "
            "'<channel>'`."
        ),
        shows=RELEASE_REFUSAL_SHOWN,
        means=(
            "The delegation is signed by a root key this verifier does not trust (`--root`, the "
            "edge's `[release] trusted_root_keys`), the release is signed by a key the delegation"
            " does not certify, or the key may not sign this channel."
        ),
        todo=(
            "Check that the edge trusts the right root public key, that the release was signed "
            "with the release key of the delegation shipped with it, and the `--channel` options "
            "of `keygen` and `sign`."
        ),
    ),
    "protocols.ReleaseKeyExpiredError": Entry(
        shape="`<file>: release key <id> expired at <time>`.",
        shows=RELEASE_REFUSAL_SHOWN,
        means="The root's delegation of the release key has run out (`keygen --days`).",
        todo=(
            "Certify a new release key with the offline root key (`waferscope release keygen DIR "
            "--root-key root.key`) and sign the bundle again."
        ),
    ),
    "protocols.ReleaseExpiredError": Entry(
        shape="`<file>: release <n> expired at <time>`.",
        shows=RELEASE_REFUSAL_SHOWN,
        means=(
            "The release's own expiry (`sign --days`) has passed: an old release held back and "
            "replayed later (a freeze attack), or one installed too late."
        ),
        todo=(
            "Sign the bundle again as a new release (higher `--version`, a fresh expiry). Check "
            "the box's clock."
        ),
    ),
    "protocols.ReleaseDowngradeError": Entry(
        shape=(
            "`<file>: release <n> is older than the accepted release <m>`, `<file>: release <n> "
            "was accepted before with other content`."
        ),
        shows=RELEASE_REFUSAL_SHOWN,
        means=(
            "The release number is lower than the highest this edge (or `--min-version`) "
            "accepted, or equal with different files: a rollback or replay."
        ),
        todo=(
            "Sign the bundle as a new release with a version above the highest accepted (the "
            "edge's status shows it). To go back to an older engine, re-sign it with a higher "
            "version."
        ),
    ),
    "protocols.ReleaseFileError": Entry(
        shape=(
            "`<file>: <path> sha256 <12 hex>… differs from the manifest`, `<file>: <path> is <n> "
            "bytes, the manifest says <m>`, `<file>: listed file(s) missing: ...`, `<file>: "
            "<path> is not listed in the signed manifest`."
        ),
        shows=RELEASE_REFUSAL_SHOWN,
        means="A bundle file inside the release was changed, removed or added after signing.",
        todo="Do not install it; fetch the release from its source again. Nothing was unpacked.",
    ),
    "protocols.AgentTooOldError": Entry(
        shape="`<file>: release <n> needs agent >= <v>, this agent is <w>`.",
        shows=RELEASE_REFUSAL_SHOWN,
        means="The release was signed with `--min-agent-version` above the installed edge agent.",
        todo="Upgrade the edge agent first (a new edge image), then install the release.",
    ),
    "protocols.ReleaseTransferError": Entry(
        shape="`<host:port>: download of <sha12> failed at byte <n> (<gRPC status>: <details>)`, "
        "`<host:port>: downloaded <sha12> does not match its size <n> and sha256`, "
        "`<host:port>: chunk at <n> is not of release <sha12>`; over HTTPS `<url>: <reason>` "
        "(the hub refused the download (401/403), the TLS certificate was refused, the server's "
        "file has another size or sha256, plain http not allowed, failed after <n> tries ... "
        "<n> of <size> bytes kept to resume), or `release.hub_token_file <file>: <reason>`.",
        shows="Edge: a `DeployAck` `DEPLOY_STATUS_FAILED` with error code `download_failed`, a "
        "`release_refused` alert; the running engine keeps serving.",
        means="The release named by a deploy command could not be fetched over BundleTransfer "
        "or HTTPS: the server is unreachable, refuses the device's token or certificate check, "
        "or has no file with that SHA-256 (`NOT_FOUND`, 404), or the bytes received do not add "
        "up to the announced file (the partial file is then deleted).",
        todo="Check the command's `location` (host:port of the BundleTransfer server, or the "
        "hub's https URL) from the edge, and that the server holds the release; for HTTPS, "
        "`[release] hub_ca_file` (the CA of the hub's certificate) and `hub_token` / "
        "`hub_token_file` (the device token the hub expects). A broken connection is resumed "
        "from the partial file by the retries and by the next command.",
    ),
    "protocols.ReleaseKeyError": Entry(
        shape=(
            "`<key file>: exists already; refusing to overwrite a key`, `<key file>: not an "
            "unencrypted PEM private key (...)`, `<key file>: holds a <Type>, not an Ed25519 "
            "key`, `<where>: an Ed25519 public key has 32 bytes, not <n>`."
        ),
        shows=RELEASE_REFUSAL_SHOWN,
        means="A key file is missing, not PEM, not Ed25519, or keygen would overwrite one.",
        todo=(
            "Point the option at the `.key` / `.pub` file `waferscope release keygen` wrote; pick"
            " another `--name` or folder for new keys."
        ),
    ),
    "protocols.BundleError": Entry(
        shape="`<folder>: <file> sha256 <12 hex>… does not match the manifest`, "
        "`<folder>: <file> is <n> bytes, manifest says <m>`, `<folder>: listed file '<f>' is "
        "missing`, `bundle <version>: ...`, `engine outputs break the bundle contract: ...`.",
        shows="Edge start: `waferscope: error: ...`, the agent does not run (demo: `edge-NN "
        "exited (status 1) before ready ...`). Hot swap: the running model stays; log `model "
        "swap refused, keeping <version>: <reason>`, the panel's red Model tile `refused: ...`, "
        "`/api/status` `model.last_error`, `POST /api/model/reload` answers 409. "
        "`waferscope edge check-bundle`: `waferscope: error: ...`. Hub: `hub register-model` "
        "prints `error: ...`; uploads answer 422.",
        means="An engine bundle that fails verification: a file differs from what "
        "`manifest.json` records (size, SHA-256), a listed file is missing, the manifest is "
        "unreadable, the encoding or class lists do not fit the head, or the engine's outputs "
        "break the contract in the warm-up run.",
        todo="See *A model bundle is refused*: copy the whole folder again, write "
        "`manifest.json` last, verify with `waferscope edge check-bundle DIR`.",
    ),
    # ------------------------------------------------------------------ edge
    "edge.ReleaseHealthError": Entry(
        shape="`release <n>: the engine does not load: ...`, `release <n>: golden set: ...`, "
        "`release <n>: golden logits differ by up to <x> (allowed <y>)`, `release <n>: golden "
        "top-class agreement <x> is too low`, `release <n>: golden latency <x> ms per wafer is "
        "over <budget>`.",
        shows="`waferscope edge install-release`: `waferscope: error: ...`, exit status 1. "
        "A running agent: a `release_refused` alert; the release's row in the store is "
        "`rolled_back` with the reason; the active engine keeps serving.",
        means="The release verified, but its engine failed the edge's local health gate: it "
        "does not load here, it ships no golden set, its logits on the golden inputs differ "
        "from those recorded where it was built (another onnxruntime build, CPU kernels, a "
        "damaged engine), or it is slower than `[release] latency_budget_ms`.",
        todo="Sign releases with `waferscope release sign --golden-maps ...`. Compare the "
        "onnxruntime version of the build machine and the edge; raise "
        "`[release] golden_max_abs_diff` or the latency budget only if the difference is "
        "understood. The version stays accepted: re-sign a fixed engine with a higher "
        "`--version`.",
    ),
    "edge.StoreError": Entry(
        shape="`<connection>: database schema v<n> is newer than this agent's v<m>`.",
        shows="Edge start: `waferscope: error: ...`, exit status 1.",
        means="The edge database (`edge.sqlite`) was written by a newer agent. Older files are "
        "upgraded when opened; newer ones are refused rather than misread.",
        todo="Run the newer agent again, or move the database aside (unpublished results in it "
        "are then not sent).",
    ),
    "edge.TokenHashError": Entry(
        shape="`expected 'scrypt$N$r$p$salt$hash' (print one with 'waferscope edge "
        "panel-token-hash')`, `unreadable scrypt parameters (<reason>)`, `scrypt parameters out "
        "of range (N a power of two >= 1024)`.",
        shows="Edge start or `waferscope edge validate-config FILE`: a configuration error on "
        "`panel.auth.operator_token_hash`, exit status 1.",
        means="The configured operator token hash is not one `waferscope edge panel-token-hash` "
        "wrote (cut short when copied, or a hash of another tool).",
        todo="Print a new one: `echo 'TOKEN' | waferscope edge panel-token-hash`, and paste the "
        "whole line into `panel.auth.operator_token_hash`.",
    ),
    "edge.ReloadRefusedError": Entry(
        shape="`model reload is disabled: the panel listens on <host>, not only on this machine, "
        "and no panel.api_token or panel.api_token_file is configured`, `send the panel's API "
        "token as 'Authorization: Bearer <token>'`, `bundle folder <path> is not under an "
        "allowed folder (<folders>); add its folder to panel.reload_dirs`, `the bundle folder "
        "must be an absolute path, not '<path>'`, `model reload is disabled: "
        "panel.api_token_file <path> is empty`.",
        shows="`POST /api/model/reload`: HTTP 403, 401 or 400 with "
        '`{"swapped": false, "error": "<message>", "model": "<running version>"}`; the agent '
        "logs `model reload refused (HTTP <status>): <message>`. The running model stays.",
        means="The panel would not load that bundle for that caller: a panel reachable from the "
        "network without a token, a missing or wrong token, or a folder outside the configured "
        "bundle's folder and `panel.reload_dirs` (links and `..` resolved).",
        todo="Set `panel.api_token_file` (a file holding 16 characters or more) and send it as "
        "a bearer token; copy the bundle next to the configured one or add its folder to "
        "`panel.reload_dirs`; give an absolute path. See *The panel* in "
        "`docs/operator-guide.md`.",
    ),
    # ------------------------------------------------------------------ hub
    "hub.AuthError": Entry(
        shape="`a password needs at least <n> characters`, `user '<name>' exists already`, "
        "`no user '<name>'`, `unknown role '<r>' (one of ...)`, `invalid token: ...`.",
        shows="`waferscope hub user ...`: `error: ...`, exit status 1. API: HTTP 400 with the "
        "message (user administration) or 401 (a bad token). Users page: the error line.",
        means="A user or token operation that cannot be done: a short password, an existing "
        "or unknown user, an unknown role, an expired or forged token, a JWT secret under 32 "
        "characters.",
        todo="Fix the name, role or password. Tokens expire: log in again or issue a new one "
        "(`waferscope hub user token NAME`). Every hub process of one installation must share "
        "the JWT secret (`auth.jwt_secret` or `<data_dir>/jwt.secret`).",
    ),
    "hub.UnprocessableError": Entry(
        shape='`{"status_code": 422, "detail": "<message>"}`.',
        shows="`POST /api/v1/uploads`.",
        means="An upload the hub refused; the detail is the `UploadError`, `FormatError` or "
        "`BundleError` message.",
        todo="See the error named in the detail.",
    ),
    "hub.UploadError": Entry(
        shape="`<name>: the file is empty`, `<name>: no wafers found`, `<name>: more than <n> "
        "wafers in one file`.",
        shows="Upload page: the error line. API: HTTP 422.",
        means="The uploaded file holds nothing to classify, or more wafers than one upload "
        "may hold.",
        todo="Upload the tester file itself (any format `waferscope formats` lists); split "
        "very large files.",
    ),
    "hub.ReleaseRegistryError": Entry(
        shape="`the hub has no trusted root key ([releases] trusted_root_keys is empty)`, "
        "`<name>: empty release file`, `<name>: <n> bytes, over the <max>-byte limit`.",
        shows="`POST /api/v1/releases` and the registry page: HTTP 400 with the message.",
        means="The hub cannot register releases, or the upload is empty or too large.",
        todo="Configure `[releases] trusted_root_keys` (the root public keys of `waferscope "
        "release keygen`); upload the `.wsrelease` file itself; raise `max_release_bytes`.",
    ),
    "hub.ReleaseNotFoundError": Entry(
        shape="`no release '<id>'`.",
        shows="`GET /api/v1/releases/<id>[/file]`, starting a rollout: HTTP 404.",
        means="No registered release has this id.",
        todo="List the releases (`GET /api/v1/releases`) and use one of their ids.",
    ),
    "hub.ReleaseRefusedError": Entry(
        shape='`{"status_code": 422, "detail": "<the verifier\'s message>"}`.',
        shows="`POST /api/v1/releases` and the registry page.",
        means="The release file failed verification: tampered (`ReleaseFileError`), expired "
        "(`ReleaseExpiredError`, `ReleaseKeyExpiredError`), signed by a key no trusted root "
        "certified (`UnknownReleaseKeyError`), a bad signature or not a release file.",
        todo="See the release error named in the detail; sign the bundle again with a "
        "certified key and a future expiry.",
    ),
    "hub.ReleaseConflictError": Entry(
        shape="`<name>: release <v> of channel '<c>' is not above the highest registered "
        "release <w>`.",
        shows="`POST /api/v1/releases` and the registry page: HTTP 409.",
        means="A downgrade or a replay: the channel already has this version or a higher one "
        "(with other content).",
        todo="Sign the release with a version above the channel's highest.",
    ),
    "hub.RangeNotSatisfiableError": Entry(
        shape="`unsupported Range '<header>'`, `Range '<header>' outside <n> bytes`.",
        shows="`GET /api/v1/releases/<id>/file` with a `Range` header: HTTP 416.",
        means="The range is not one `bytes=start-end` / `bytes=start-` / `bytes=-n` range "
        "inside the file (a resumed download already complete, or another file's offset).",
        todo="Start the download again without `Range` (and drop the partial file).",
    ),
    "hub.RolloutError": Entry(
        shape="`the device group is empty`, `unknown device(s): <ids>`, `wave <n> names devices "
        "outside the group: [...]`, `rollout <id> is still running; finish or abort it first`, "
        "`cannot <action> a rollout that is <state>`, `rollout request: <reason> at <field>`.",
        shows="`POST /api/v1/rollouts` (HTTP 400), `POST /api/v1/rollouts/<id>/<action>` "
        "(HTTP 409), the registry and rollout pages.",
        means="The rollout cannot be planned as asked, or the action does not fit its state.",
        todo="Name known devices; wait for or abort the running rollout; see the states in "
        "docs/hub.md#releases-and-rollouts.",
    ),
    "hub.RolloutNotFoundError": Entry(
        shape="`no rollout '<id>'`.",
        shows="`GET|POST /api/v1/rollouts/<id>...`, `/ui/rollouts/<id>`: HTTP 404.",
        means="No rollout has this id.",
        todo="List the rollouts (`GET /api/v1/rollouts`).",
    ),
    "hub.SprtSettingsError": Entry(
        shape="`SPRT needs 0 < alpha, beta < 1 and 0 < theta0 < theta1 < 1; got ...`.",
        shows="The rollout engine's log when a wave with labelled pairs is judged.",
        means="The rollout's SPRT gate settings are out of range.",
        todo="Start the rollout with `sprt_theta0` below `sprt_theta1`.",
    ),
    "hub.RegistryError": Entry(
        shape="The `BundleError` message, `<folder>: the manifest names no model_version`, "
        "`model <version> is registered with other content (sha256 <12 hex>…)`.",
        shows="`waferscope hub register-model DIR`: `error: ...`, exit status 1.",
        means="The bundle fails verification, has no version, or its version is already "
        "registered with different bytes.",
        todo="Verify the folder (`waferscope edge check-bundle DIR`); give a changed model a "
        "new `model_version` (versions are immutable once registered).",
    ),
    "hub.SelectorError": Entry(
        shape="`review.selector '<name>' is not one of [...]`.",
        shows="Hub start-up: the error line, exit status 1 (the config schema refuses unknown "
        "names first, so this shows only for a selector built in code).",
        means="The configuration names a queue selector the registry `review_policy.SELECTORS` "
        "does not have.",
        todo="Set `review.selector` to `uncertainty_first`, `entropy` or `entropy_kcenter`.",
    ),
    "hub.TrainingJobError": Entry(
        shape="`no training job <id>`, `training job <id> is <state>, not running`, "
        "`training job <id> belongs to worker '<w>'`, `progress <p> is outside 0..1`, "
        "`a succeeded job needs the release id the registry returned`, `a failed job needs "
        "its reason`, `training job reason '<r>' is not one of [...]`.",
        shows="API `/api/v1/training-jobs/...`: HTTP 404 (no such job) or 409 with the message.",
        means="A worker reported on a job it does not hold, one already finished, or with "
        "incomplete fields.",
        todo="Let each worker report only on the job it claimed; a finished job stays as it is: "
        "queue a new one (`POST /api/v1/training-jobs`) to retry.",
    ),
    "hub.ReviewError": Entry(
        shape="`a review needs a pattern`, `no result <id>`.",
        shows="API `POST /api/v1/results/<id>/review`: HTTP 400 with the message. UI: the "
        "wafer page again (HTTP 422) with `Choose a pattern (keys 1–9) before saving the "
        "label.` (or `The label was not saved: <message>.`) above the form, the entered root "
        "cause and comment kept.",
        means="A review without a pattern, or for a result the hub does not have.",
        todo="Choose a pattern (keys 1-9) before saving; check the result id.",
    ),
    "hub.MapCodecError": Entry(
        shape="`map <rows>x<cols> is too large to store`, `not a version-<n> map blob`, "
        "`<what> blob is corrupt: ...`, ...",
        shows="Ingest: the result becomes a dead letter (as `MessageError`). Reading a stored "
        "map or heatmap: see `CorruptBlobError` (HTTP 409).",
        means="A wafer map or heatmap that cannot be packed into, or unpacked from, the hub's "
        "compact blob format.",
        todo="For dead letters, see `MessageError`. A corrupt stored blob means the blob store "
        "was changed outside the hub: restore it from a backup.",
    ),
    "hub.BlobError": Entry(
        shape="`blob folder <path> is not writable`, `S3 bucket <name> is not reachable`, "
        "`cannot read blob <key>: ...`, `unknown blob kind '<k>' ...`.",
        shows="Ingest: the log line `blob store unavailable (<message>); retrying in <s> s`, "
        "retried with back-off, nothing acknowledged meanwhile. `/readyz`: 503 with "
        "`blobs: false`.",
        means="The blob store (maps, heatmaps, uploads, bundles) cannot be used: folder "
        "permissions, a full disk, an S3 endpoint or credentials problem.",
        todo="Fix `blobs.path` permissions or space, or the S3 settings (`blobs.*` in "
        "`docs/hub-config.md`). The ingest resumes by itself.",
    ),
    "hub.BlobNotFoundError": Entry(
        shape="`no blob <key>`, `not a blob key: '<key>'`.",
        shows="The wafer's map or overlay picture (and SHAP) answers HTTP 404 `the map blob "
        "<key> of result <id> is missing from the blob store` (or `heatmap`); the hub logs the "
        "same line once per request.",
        means="A row names a blob that is not in the store: blobs deleted or a store restored "
        "from another time than the database.",
        todo="Back up and restore the database and the blob store together.",
    ),
    "hub.CorruptBlobError": Entry(
        shape="`the map blob <key> of result <id> is corrupt: <reason>` (or `heatmap`); the "
        "reason is the `MapCodecError` or `MessageError` message, `the map has no dies` or "
        "`the heatmap is empty`.",
        shows="The wafer's map or overlay picture (and SHAP) answers HTTP 409 with the message "
        "(the error page, or JSON under `/api`); the hub logs the same line once per request, "
        "without a traceback.",
        means="The blob is in the store but its bytes are not a map or heatmap the hub wrote: "
        "changed or truncated outside the hub (a disk error, a bad restore, a hand edit).",
        todo="Restore the blob store from a backup taken with the database. The key is the "
        "SHA-256 of the original bytes, so a restored blob can be checked with `sha256sum`.",
    ),
    # ------------------------------------------------------------------ appliance
    "appliance.ApplianceError": Entry(
        shape="One line naming the part: `the mosquitto broker is not installed: ...`, "
        "`<part> exited (status <n>) before ready at <url>; its log <file>:` followed by the "
        "log's last lines, `<part> did not get ready at <url> within <n> s; ...`, `'waferscope "
        "hub <command>' failed: <last line>`, `no wafer maps to replay: ...`.",
        shows="`waferscope demo`: `demo: <message>`, exit status 1; everything started so far "
        "is stopped again.",
        means="A part of the appliance could not be started or reached. (It is not a "
        "`WaferscopeError`: only the demo command catches it.)",
        todo="Read the log tail in the message, and the part's log under `<workdir>/logs/`. "
        "The common cases have their own sections above (mosquitto missing, ports).",
    ),
    # ------------------------------------------------------------------ trainer
    "trainer.HubRequestError": Entry(
        shape="`<METHOD> <path>: HTTP <status> <detail>`, `<METHOD> <path>: hub unreachable "
        "(...)`, `the registry answered without a release_id: ...`.",
        shows="`waferscope train-worker`: the log and, for a job step, the job's error at the "
        "hub (`/ui/training`).",
        means="The hub or the release registry refused a request (bad credentials, wrong role, "
        "a registry that rejects the release) or could not be reached.",
        todo="Check `hub_url` / `registry_url`, that the worker's user has role engineer, and "
        "the registry's reason in the message.",
    ),
    "trainer.RetrainError": Entry(
        shape="`gate not met: INT8 macro-F1 <f> < <min>`, `no gate set: ...`, "
        "`<file>: cannot read worker settings (...)`, `<file>: cannot read (...)`.",
        shows="`waferscope train-worker`: the job ends failed at the hub with this reason; "
        "nothing is registered.",
        means="A training job could not produce an acceptable candidate, or the worker's "
        "settings are unreadable.",
        todo="Look at the job's log on `/ui/training`; for a gate failure, gather more labels "
        "or adjust `epochs` / `lr` / `min_macro_f1` in the worker settings.",
    ),
    "trainer.ModelError": Entry(
        shape="`cannot build backbone '<name>' with <args>: ...`, `<path>: cannot load "
        "weights: ...`, `<path>: no tensor matches the backbone (wrong architecture?)`.",
        shows="`waferscope train` / `evaluate` / `export` / `bundle`: `waferscope: error: ...`.",
        means="A backbone that timm cannot build with the given arguments, or a checkpoint "
        "that does not fit the configured architecture.",
        todo="Use the configuration the checkpoint was trained with (recorded in the run "
        "folder); see `docs/trainer.md`.",
    ),
    "trainer.ConfigError": Entry(
        shape="`<file>: invalid configuration: <problems>`, `<file>: not valid TOML: ...`, "
        "`--set expects key=value, got '<x>'`, ...",
        shows="Trainer commands: `waferscope: error: ...`.",
        means="A training configuration or `--set` override that cannot be used.",
        todo="Fix the named key; `trainer/configs/` holds working examples.",
    ),
    "trainer.ExportError": Entry(
        shape="`<path>: not a waferscope trainer checkpoint`, `ONNX output <name> differs from "
        "torch by <d> (> <tolerance>)`, ...",
        shows="`waferscope export` / `bundle`: `waferscope: error: ...`.",
        means="A checkpoint that cannot be exported, or an exported engine whose outputs "
        "differ from the torch model beyond the tolerance.",
        todo="Export from a checkpoint `waferscope train` wrote; a parity failure is a bug "
        "of the export to report with the checkpoint.",
    ),
    "trainer.TtaError": Entry(
        shape="`the model already averages test-time views`, `expected outputs [...], found "
        "[...]`, `the input is <h>x<w>, not square`, `unknown test-time augmentation '<m>'`.",
        shows="`waferscope bundle --tta d4`: `waferscope: error: ...`.",
        means="An engine that cannot be wrapped for the 8-view averaging: not the bundle "
        "contract's inputs and outputs, a non-square input, or one that is wrapped already.",
        todo="Bundle from a checkpoint `waferscope train` wrote, with `--tta d4` or `--tta "
        "none`; an engine is wrapped once.",
    ),
    "trainer.TensorRTUnavailableError": Entry(
        shape="`TensorRT is not installed here (pip package 'tensorrt')`.",
        shows="`waferscope trt-build`: `waferscope: error: ...`.",
        means="No TensorRT on this machine.",
        todo="Build on the GPU machine that will run the engine, or let the edge build it at "
        'first start (`model.runner = "tensorrt"`).',
    ),
    "trainer.DataError": Entry(
        shape="`<path>: no such file`, `<path>: label '<l>' is not one of [...]`, `no labelled "
        "input files given`.",
        shows="Trainer commands: `waferscope: error: ...`.",
        means="Labelled data that cannot be loaded or combined.",
        todo="Check the data paths in the configuration and `WAFER_DATA_DIR`.",
    ),
    "trainer.SynthError": Entry(
        shape="`unknown generator '<g>'; known: [...]`, `<path>: not a generator checkpoint`, "
        "`class '<c>': only <n> of <m> plausible maps after <r> rounds (rejection rate <x>)`, "
        "`synth.source <path>: <n> maps of <c>, <m> wanted`, ...",
        shows="`waferscope synth train` / `sample` / `score`, or `waferscope train` with a "
        "`[synth]` section: `waferscope: error: ...`.",
        means="A synthetic-data generator, checkpoint, sampling request or per-class budget "
        "that cannot be used; or a generator whose draws keep failing the plausibility check "
        "(dies off the wafer, too little wafer covered, no fails on a defect map).",
        todo="Fix the named setting; train the generator longer, or loosen `--max-outside` / "
        "`--min-coverage` knowingly (see the Synthetic data section of `docs/trainer.md`).",
    ),
    "trainer.TaxonomyError": Entry(
        shape="`<file>: not valid TOML: ...`, `<file>: prior.<pattern> names unknown cause(s) "
        "[...]`, ...",
        shows="Trainer commands: `waferscope: error: ...`.",
        means="The root-cause taxonomy file is unreadable or inconsistent.",
        todo="Fix the named entry of the taxonomy (the shipped one: `taxonomy.toml` in a bundle).",
    ),
    "trainer.NodeDataError": Entry(
        shape="`node config 'data-path' is not set (...)`, `node config 'data-path': <path>: no "
        "such file`, `node data [<paths>]: <reason>`.",
        shows="Federated runs: the SuperNode's ClientApp fails the message; the ServerApp log "
        "counts a failure for that node (`aggregate_train: Received <n> results and <m> "
        "failures`) and the round goes on with the other nodes.",
        means="A SuperNode has no usable labelled maps: it was started without "
        "`--node-config data-path=...` (or `waferscope edge federated --data`), the file is "
        "gone, or its classes differ from the run's.",
        todo="Restart the SuperNode with the path of this edge's labelled maps (see "
        "`docs/federated.md`).",
    ),
    "trainer.FederatedRunError": Entry(
        shape="`run config: missing or invalid setting ...`, `run config strategy '<s>': use "
        "'fedavg' or 'fedprox'`, `the server's train config needs data.val (...)`, "
        "`<path>: cannot resume: ...`, `round <n>: no usable replies after <k> tries`.",
        shows="`flwr run ... --stream`: the ServerApp's error and the run ends as failed "
        "(`flwr ls` shows it).",
        means="The federated run cannot start (run config or server train config) or continue "
        "(its saved `server_state.pt` is unreadable, or no node answered a round several times).",
        todo="Fix the named setting (`--run-config`, the train config file); for a corrupt "
        "state file, move it away to start over; for rounds without replies, check that "
        "enough SuperNodes are online (`flwr supernode list`) and raise `round-timeout`.",
    ),
    "edge.FederatedClientError": Entry(
        shape="`edge federated: <module> is not installed; install the "
        "waferscope-edge[federated] extra and Flower ...`, `edge federated: <path>: no such "
        "file`.",
        shows="`waferscope edge federated`: `waferscope: error: ...`, exit status 1.",
        means="The edge was asked to join a federated run but the optional federated client "
        "(trainer + Flower) is not installed, or a data, CA or key file is missing.",
        todo="Install `waferscope-edge[federated]` and Flower as `scripts/setup.sh` does (Flower "
        "with `--no-deps`, see `docs/federated.md`), and check the named file; with `--store`, "
        "`edge federated: no labelled maps` means the store holds no labels with maps yet.",
    ),
    "edge.LabelError": Entry(
        shape="`label <id> of result <id>: no pattern`, `label <id>: unknown source <n>`, "
        "`panel label: no result <id> in this edge's store`.",
        shows="Agent log: `ignored a label on waferscope/v1/<site>/<device>/label: ...` "
        "(nothing stored); the panel answers HTTP 400 / 404.",
        means="A label from the hub or the panel cannot be stored: it names no pattern, or the "
        "panel was asked to label a result this edge does not hold.",
        todo="Label again with a pattern of the engine's class list; results pruned from the "
        "edge store cannot be labelled at the panel (the hub's review still reaches the edge).",
    ),
    "hub.FederationError": Entry(
        shape="`the SuperLink is not running (federation.enabled?)`, `flwr supernode register "
        "<device>: <flwr output>`, `edge <device> has no node key (provision it first)`, "
        "`federation.app_dir and federation.train_config must be set`.",
        shows="`POST /api/v1/federation/nodes/<device>`: HTTP 400; the key bundle route: "
        "HTTP 404; hub log `federation scheduling failed`.",
        means="The hub cannot provision a node or submit a federated run: federation is off, the "
        "SuperLink did not start (see `<state_dir>/superlink.log`), or settings are missing.",
        todo="Set `[federation] enabled = true` (with the `[federated]` extra installed), check "
        "`superlink.log` in the federation state folder, provision the edge before exporting "
        "its keys.",
    ),
    "protocols.FederationHistoryError": Entry(
        shape="`<run dir>/history.jsonl:<line>: not a round record: ...`, "
        "`<run dir>/summary.json: not JSON: ...`.",
        shows="`GET /api/v1/federation` and `/ui/federation`: HTTP 500 with the message.",
        means="A federated run's state file was damaged or written by something else than the "
        "trainer's ServerApp.",
        todo="Move the damaged file aside; the ServerApp's `server_state.pt` still holds the "
        "history and the next round appends again.",
    ),
}

_REASON_TXT = "the `error:` line of `rejected/<name>.reason.txt`"
# The edge's outcome codes of files and wafers, keyed by code.
CODES: dict[str, Entry] = {
    "format_error": Entry(
        shape="The reader's message: `<source>: line <n>, byte <offset>, <record>: <format> "
        "<reason>` (a `where:` line repeats the place), or `<file name>: <message>` for other "
        "errors met while reading.",
        shows=f"Hot folder: {_REASON_TXT}, file in `rejected/`. gRPC: `REJECTED` with this "
        "code. A `parse_failure` alert `file <name> rejected (format_error)`.",
        means="The file could not be read (`FormatError`, `WaferMapError`, an I/O error).",
        todo="See `FormatError`.",
    ),
    "truncated": Entry(
        shape="As `format_error`.",
        shows="As `format_error`.",
        means='A reader error whose message contains "truncated". The code is chosen from '
        "the message text, so other cut-short files come as `format_error`.",
        todo="See `TruncatedError`.",
    ),
    "unknown_format": Entry(
        shape="`<source>: byte 0: content matches no known wafer-map format (...)` or "
        "`... the input is empty`.",
        shows="As `format_error`.",
        means="No reader recognised the content (`UnknownFormatError`).",
        todo="See `UnknownFormatError`.",
    ),
    "invalid_wafer": Entry(
        shape="Per wafer: `<source> wafer #<i>: the wafer holds no dies`; for the whole file: "
        "the wafers' reasons joined by `; `, or `the file holds no wafers`.",
        shows="Per wafer: a `wafer #<i>: invalid_wafer: ...` line in the reason file and a "
        "`REJECTED` `WaferOutcome`; the file is `partial` (in `done/`). When no wafer is "
        "left: the file is rejected with this code and a `parse_failure` alert is raised.",
        means="Wafers that cannot be classified (`WaferRejectedError`).",
        todo="See `WaferRejectedError`.",
    ),
    "duplicate": Entry(
        shape="`<name>: the same bytes were already processed as <earlier name> (<12 hex>)`.",
        shows="Hot folder: the file goes to `rejected/`; its `.reason.txt` holds just this "
        "line. gRPC never answers with it: a repeated submission gets the stored results.",
        means="The SHA-256 of the file's bytes is in the edge's file table: it was processed "
        "before (under this or another name). Not classified again.",
        todo="Nothing, unless the tester really produced two different wafers with identical "
        "bytes (then its files lack unique ids). To reprocess on purpose, change the bytes.",
    ),
    "too_large": Entry(
        shape="`<name>: <n> bytes is more than the <limit>-byte limit` (hot folder), "
        "`... upload limit` (gRPC `Upload`).",
        shows=f"Hot folder: {_REASON_TXT}, the file is not read. gRPC: `REJECTED`.",
        means="Larger than `ingest.hot_folder.max_file_bytes` or `ingest.grpc.max_upload_bytes` "
        "(512 MiB each by default).",
        todo="Raise the limit if such files are legitimate.",
    ),
    "queue_full": Entry(
        shape="`the edge store is full or the agent is stopping; retry later`, `the ingest "
        "queue is full; retry later`, `the edge store is full`, or the message of an internal "
        "error.",
        shows="gRPC only: `REJECTED` with this code. The hot folder leaves the file where it "
        "is and takes it again later.",
        means="Ingest is paused: the store is full of unpublished results (panel: STORE FULL, "
        "`/readyz` 503, a `store-full` alert), the queue of `ingest.queue_files` waiting files "
        "stayed full for 5 s, or processing failed (`internal`).",
        todo="Retry later. For a full store, restore the hub link (see *The outbox keeps "
        "growing*); ingest resumes by itself.",
    ),
    "shutting_down": Entry(
        shape="`the agent is stopping`.",
        shows="gRPC only: `REJECTED`. In the hot folder the file stays for the next start.",
        means="The agent received SIGTERM / Ctrl-C before it started this file.",
        todo="Submit again once the agent is back.",
    ),
    "internal": Entry(
        shape="`internal error: <exception>`, or `edge database error: <sqlite reason>`.",
        shows="The log: `processing failed; the jobs stay unprocessed` with a traceback, or "
        "`the edge database refused the batch (<reason>); the files are retried`. Hot folder: "
        "the file stays and is tried again at the next scan. gRPC: `REJECTED` with code "
        "`internal` and this message.",
        means="An unexpected exception while processing a batch, or SQLite refusing the commit "
        "(e.g. `database is locked` after its 30 s wait, when another program holds the edge "
        "database); nothing of the batch was stored.",
        todo="For a database error: find what else opens the edge database (a backup tool, a "
        "second agent with the same `data_dir`) and stop it; the files go through at the next "
        "scan. Otherwise a bug: report it with the file and the traceback. Move the file out of "
        "the hot folder to stop the retries.",
    ),
    "timeout": Entry(
        shape="`classification did not finish in time; submit again (a file already stored is "
        "answered from the store)`.",
        shows="gRPC only: `REJECTED`, with empty `file_name` and `sha256`.",
        means="The file was not classified and stored within `ingest.grpc.response_timeout_s` "
        "(60 s); it may still be, later.",
        todo="Submit again: a file stored meanwhile is answered from the store, without a "
        "second classification.",
    ),
    "empty": Entry(
        shape="`<name>: the file is empty`.",
        shows="gRPC only: `REJECTED`.",
        means="A `WaferFile` without content.",
        todo="Check the tester's upload.",
    ),
    "digest_mismatch": Entry(
        shape="`<name>: sha256 <12 hex>… does not match the declared <12 hex>…`.",
        shows="gRPC only: `REJECTED`.",
        means="The bytes received differ from the SHA-256 the client declared: corrupted in "
        "transit, or the client hashed something else.",
        todo="Send again; check the client computes the SHA-256 of exactly the bytes it sends.",
    ),
    "size_mismatch": Entry(
        shape="`<name>: received <n> bytes, the header announced <m>`.",
        shows="gRPC `Upload` only: `REJECTED`.",
        means="The chunks add up to another size than the `UploadHeader` said.",
        todo="Send the whole file again.",
    ),
    "out_of_order_chunk": Entry(
        shape="`<name>: chunk at offset <n>, expected <m>`, `<name>: a second header inside "
        "the upload`.",
        shows="gRPC `Upload` only: `REJECTED`.",
        means="Chunks must follow each other with contiguous offsets after exactly one header.",
        todo="Fix the client's chunking.",
    ),
    "missing_header": Entry(
        shape="`an upload must start with an UploadHeader`.",
        shows="gRPC `Upload` only: `REJECTED`.",
        means="The first message of an `Upload` stream was not a header.",
        todo="Fix the client.",
    ),
}

# What became of a file (JobOutcome.status, the hot folder's and gRPC's view).
STATUSES: dict[str, Entry] = {
    "accepted": Entry(
        shape="",
        shows="Hot folder: `done/`. gRPC: `SUBMIT_STATUS_ACCEPTED`.",
        means="Every wafer classified and stored.",
        todo="",
    ),
    "partial": Entry(
        shape="",
        shows="Hot folder: `done/` and a `.reason.txt` listing the refused wafers. gRPC: "
        "`SUBMIT_STATUS_PARTIAL`.",
        means="Some wafers were refused, the others classified.",
        todo="",
    ),
    "rejected": Entry(
        shape="",
        shows="Hot folder: `rejected/` with a `.reason.txt`. gRPC: `SUBMIT_STATUS_REJECTED` "
        "with an error code. A `parse_failure` alert.",
        means="Nothing of the file could be classified.",
        todo="",
    ),
    "duplicate": Entry(
        shape="",
        shows="Hot folder: `rejected/` (code `duplicate`), or just moved when a crash came "
        "between commit and move. gRPC: the stored answer.",
        means="The same bytes were processed before.",
        todo="",
    ),
    "paused": Entry(
        shape="",
        shows="Hot folder: the file stays. gRPC: `REJECTED`, code `queue_full` (store full) or "
        "`internal`.",
        means="Not processed now: store full, or an internal or database error.",
        todo="",
    ),
    "shutdown": Entry(
        shape="",
        shows="Hot folder: the file stays. gRPC: `REJECTED`, code `shutting_down`.",
        means="The agent stopped before starting the file.",
        todo="",
    ),
}

# SubmitResponse.status and WaferOutcome.status values the service answers with.
SUBMIT_STATUSES: dict[str, str] = {
    "SUBMIT_STATUS_ACCEPTED": "Every wafer classified and stored (or the same bytes were "
    "stored before: the stored results are returned).",
    "SUBMIT_STATUS_PARTIAL": "Some wafers classified, some refused: see each `WaferOutcome`.",
    "SUBMIT_STATUS_REJECTED": "Nothing classified: `error.code` and `error.message` say why "
    "(codes above); `error.location` names the place in the file for reader errors.",
    "WAFER_OUTCOME_STATUS_CLASSIFIED": "The wafer's result: `result_id`, `pattern`, "
    "`confidence`, `review_required` (the whole `WaferResult` with `include_results`).",
    "WAFER_OUTCOME_STATUS_REJECTED": "The wafer was refused: `error` says why.",
}

# gRPC status codes a TesterIngest client can meet. The service answers content problems in
# the SubmitResponse; these come from gRPC itself. Any code the service sets in
# grpc_ingest.py must be listed here too.
GRPC_CODES: dict[str, str] = {
    "OK": "The call completed; read `SubmitResponse.status` for the outcome.",
    "RESOURCE_EXHAUSTED": "A message larger than the server's limit "
    "(`ingest.grpc.max_message_bytes` + 1 MiB; 64 MiB by default): send large files with "
    "`Upload` in chunks, or raise the limit.",
    "UNAVAILABLE": "Nothing listens at the address: the agent is not running, "
    "`ingest.grpc.enabled` is false (the default), or `ingest.grpc.listen` is another address "
    "(by default `127.0.0.1:50051`, this machine only).",
    "DEADLINE_EXCEEDED": "The client's deadline passed first; give calls more time than "
    "`ingest.grpc.response_timeout_s`, then resubmit (stored files are answered from the "
    "store).",
    "UNKNOWN": "An exception escaped the service: a bug; the agent's log has the traceback.",
}

# HTTP error statuses, keyed "<surface> <status>".
HTTP: dict[str, Entry] = {
    "hub 400": Entry(
        shape='`{"status_code": 400, "detail": "<message>"}`',
        shows="API",
        means="A request the hub cannot do: a review without a pattern or for an unknown "
        "result, SHAP without `engine.bundle`, a user operation the `AuthError` message "
        "explains, a malformed request body.",
        todo="Read the detail.",
    ),
    "hub 401": Entry(
        shape='`{"status_code": 401, "detail": "log in first"}` (API), the login page '
        "(`Wrong user name or password.`), or a redirect to `/login` (pages)",
        shows="API, UI",
        means="No valid token or cookie: not logged in, an expired or forged token, a wrong "
        "password.",
        todo="Log in again, or get a token (`POST /api/v1/auth/token`).",
    ),
    "hub 403": Entry(
        shape="`the <role> role may not do this (<permission>)`",
        shows="API, UI (error page)",
        means="Logged in, but the role lacks the permission (operator < reviewer < engineer < "
        "admin). `this route declares no permission` is a bug of the hub.",
        todo="Ask an admin for another role (`waferscope hub user ...`).",
    ),
    "hub 404": Entry(
        shape="`no result <id>`, `no map for result <id>`, `no heatmap for result <id>`, "
        "`the map blob <key> of result <id> is missing from the blob store`, `no user '<name>'`",
        shows="API, UI (error page)",
        means="An unknown id or path; a result without a stored map or heatmap; a blob the "
        "database names but the blob store lacks (see `BlobNotFoundError`).",
        todo="Check the id. Results without a heatmap come from edges with "
        "`model.explain = false` or `mqtt.include_heatmap = false`. A missing blob: restore "
        "the database and the blob store together.",
    ),
    "hub 409": Entry(
        shape="`the map blob <key> of result <id> is corrupt: <reason>` (or `heatmap`)",
        shows="UI (error page; the picture does not show), API",
        means="A stored map or heatmap cannot be decoded; see `CorruptBlobError`.",
        todo="Restore the blob store from a backup.",
    ),
    "hub 416": Entry(
        shape="`unsupported Range '<header>'`, `Range '<header>' outside <n> bytes`",
        shows="`GET /api/v1/releases/<id>/file`",
        means="A `Range` the hub does not serve; see `RangeNotSatisfiableError`.",
        todo="Download the whole file again.",
    ),
    "hub 422": Entry(
        shape='`{"status_code": 422, "detail": "<message>"}`; the wafer page with '
        "`Choose a pattern (keys 1–9) before saving the label.`",
        shows="`POST /api/v1/uploads`; the wafer page's review form",
        means="The upload was refused (see `UploadError`, `FormatError`, `BundleError`); a "
        "review was saved without a pattern (see `ReviewError`).",
        todo="Read the detail; choose a pattern and save again (the form keeps what you entered).",
    ),
    "hub 503": Entry(
        shape='`{"ready": false, "checks": {"database": ..., "schema": ..., "blobs": '
        '..., "mqtt": ...}}`',
        shows="`/readyz`",
        means="Not ready: a check is false: database unreachable, schema not migrated "
        "(`waferscope hub migrate`), blob store unusable, or the ingest not connected to the "
        "broker.",
        todo="Fix the failing check; the hub log says more.",
    ),
    "edge panel 400": Entry(
        shape='`{"swapped": false, "error": "the bundle folder must be an absolute path, '
        "not '<path>'\", ...}`",
        shows="`POST /api/model/reload`",
        means="A relative bundle path; see `ReloadRefusedError`.",
        todo="Send the bundle folder's absolute path.",
    ),
    "edge panel 401": Entry(
        shape='`{"swapped": false, "error": "send the panel\'s API token as \'Authorization: '
        "Bearer <token>'\", ...}`",
        shows="`POST /api/model/reload`",
        means="A token is configured (`panel.api_token_file` or `panel.api_token`) and the "
        "request did not send it, or sent another.",
        todo="Send `Authorization: Bearer <token>` with the configured token.",
    ),
    "edge panel 403": Entry(
        shape='`{"swapped": false, "error": "model reload is disabled: ...", ...}` or `... '
        'bundle folder <path> is not under an allowed folder (<folders>) ..."`',
        shows="`POST /api/model/reload`",
        means="The panel listens on a non-loopback address without a token, or the bundle "
        "folder lies outside the allowed folders; see `ReloadRefusedError`.",
        todo="Configure `panel.api_token_file`; put the bundle next to the configured one or "
        "add its folder to `panel.reload_dirs`.",
    ),
    "edge panel 404": Entry(
        shape="`no stored result <id>`",
        shows="wafer pages, pictures, `/api/wafers/<id>`",
        means="A result id this edge does not have (pruned after publishing, or another edge's).",
        todo="Look the wafer up on the hub.",
    ),
    "edge panel 409": Entry(
        shape='`{"swapped": false, "error": "<reason>", "model": "<running version>"}`',
        shows="`POST /api/model/reload`",
        means="The bundle was refused; the running model stays.",
        todo="See *A model bundle is refused*.",
    ),
    "edge panel 503": Entry(
        shape='`{"ready": false, "reasons": ["store_full"]}` (or `not_running`)',
        shows="`/readyz`",
        means="The store is full of unpublished results (ingest paused), or the agent is "
        "starting or stopping.",
        todo="See *The outbox keeps growing*.",
    ),
}

_DEMO_LOGS = "`<workdir>/logs/` (one file per process: `broker.log`, `hub.log`, `edge-01.log`, ...)"
SITUATIONS: tuple[Situation, ...] = (
    Situation(
        title="The demo says mosquitto is missing",
        intro="`demo: the mosquitto broker is not installed: scripts/setup.sh installs it, or "
        "run 'apt-get install mosquitto' (Debian/Ubuntu) or 'brew install mosquitto' (macOS)`",
        items=(
            "The demo runs its own private Mosquitto and looks for the `mosquitto` program on "
            "`PATH`, then in `/usr/sbin` and `/usr/local/sbin` (Debian installs it in "
            "`/usr/sbin`, which is often not on a user's `PATH`).",
            "`scripts/setup.sh` installs it with apt-get unless `WAFERSCOPE_SKIP_SYSTEM=1`.",
            "The Debian package also starts a system broker on port 1883; the demo does not "
            "use it (its broker listens on a free port of 127.0.0.1), so it may stay or be "
            "turned off (`systemctl disable --now mosquitto`).",
        ),
        evidence=(
            (
                "appliance/src/waferscope/appliance/broker.py",
                "the mosquitto broker is not installed",
            ),
            ("appliance/src/waferscope/appliance/broker.py", "/usr/local/sbin/mosquitto"),
        ),
    ),
    Situation(
        title="A port is in use",
        intro="The demo does not stop for a taken port: it uses the ports of the last run "
        "(`<workdir>/state.json`), else 8400 for the hub and 8401, 8402, ... for the edge "
        "panels (`--hub-port`, `--edge-port`), and any of them that is taken is replaced by a "
        "free port. The start-up lines print the addresses actually used, and `state.json` "
        "keeps them for the next run.",
        items=(
            "A port taken between that choice and the start (another program starting at the "
            "same moment) stops the demo with `broker port 127.0.0.1:<port> is already in use` "
            "or `<part> exited (status 1) before ready at http://127.0.0.1:<port>; its log "
            "...`: run it again.",
            "A demo killed with SIGKILL leaves its parts running (each runs in its own session "
            "so that Ctrl-C reaches only the launcher, which stops them in order); they keep "
            "ports and databases. Find them with `ps -ef | grep -e waferscope.protocols.cli.main "
            "-e mosquitto.conf` and stop them by process id (`kill <pid>`, SIGTERM) before "
            "starting again.",
            "A stand-alone edge agent whose panel port (`panel.port`, 8080) is taken stops "
            "with `waferscope: error: the panel could not listen on <host>:<port> (is the port "
            "in use? set panel.port)`, exit status 1. A taken gRPC address "
            "(`ingest.grpc.listen`) stops it with `waferscope: error: cannot listen on "
            "<address>`. Choose another port, or `panel.port = 0` for any free one (the log "
            "line `panel on http://...` says which).",
            "The hub: its log shows uvicorn's `address already in use` and the process exits; "
            "set `http.port`.",
        ),
        evidence=(
            ("appliance/src/waferscope/appliance/broker.py", "is already in use"),
            ("appliance/src/waferscope/appliance/processes.py", "before {what}; its log"),
            ("appliance/src/waferscope/appliance/launcher.py", "DEFAULT_HUB_PORT = 8400"),
            ("edge/src/waferscope/edge/panel/__init__.py", "the panel could not listen on"),
            ("protocols/src/waferscope/protocols/cli/main.py", "except OSError as exc"),
            ("appliance/src/waferscope/appliance/processes.py", "start_new_session=True"),
        ),
    ),
    Situation(
        title='An edge shows "no broker link"',
        intro="The demo's progress line says `no broker link: edge-01` when the edge answers "
        "but is not connected to the broker (its gauge `waferscope_edge_hub_connected` is 0); "
        "the panel's *Hub link* tile says DOWN (OFF when `mqtt.enabled = false`), and "
        "`/api/status` has `hub_link.connected: false`. The edge keeps classifying and "
        "storing; its outbox grows until the link is back, then everything is sent in order.",
        items=(
            "Look at the edge's log: `broker refused the connection: <reason>` (wrong user "
            "name or password, ACL, TLS), `disconnected from the broker: <reason>`, and "
            "`connected to <host>:<port> (session present: ...)` once it works.",
            "Wrong `mqtt.host` / `mqtt.port`, a firewall, or TLS settings (`mqtt.tls.*`: CA "
            "file, client certificate) that do not match the broker.",
            "Two agents with the same client id (`mqtt.client_id`, by default the device id): "
            "the broker drops the older connection whenever the other connects, and both flap. "
            "Device ids must be unique.",
            "In the demo, the broker is a process of the demo: if it stopped, the demo stops "
            "with `stopping: broker exited unexpectedly`; its log is `<workdir>/logs/broker.log`.",
            "Reconnects back off from `mqtt.reconnect_min_s` to `mqtt.reconnect_max_s` (30 s "
            "by default), so a fixed broker may take that long to be noticed.",
        ),
        evidence=(
            ("appliance/src/waferscope/appliance/progress.py", "no broker link: "),
            ("edge/src/waferscope/edge/mqtt_link.py", "broker refused the connection: %s"),
            ("edge/src/waferscope/edge/mqtt_link.py", "disconnected from the broker: %s"),
            ("appliance/src/waferscope/appliance/demo.py", "exited unexpectedly"),
        ),
    ),
    Situation(
        title="The outbox keeps growing",
        intro="The outbox holds the results and alerts an edge has stored and the broker has "
        "not yet acknowledged: the panel's *Outbox* tile (amber above 100, with the oldest "
        "entry's time), `waferscope_edge_outbox_depth`, the demo's `waiting at edges N`, the "
        "hub's *Devices* page (reported with each status heartbeat).",
        items=(
            "No broker link: see above.",
            "The broker takes the messages but says they reached nobody: PUBACK reason code 16 "
            "(*no matching subscribers*: the hub is not running, has not subscribed again "
            "since a broker restart, or listens to another site), or a failure reason code "
            "(for example an ACL refusal). The edge keeps such messages and sends them again, "
            "in order, after a pause that doubles from 0.5 s to 15 s; its log says `the broker "
            "did not deliver N message(s) (first outbox id X): kept in the outbox, sending "
            "again in S s`. Start the hub, or fix the ACL.",
            "A slow or stuck hub does not grow the edges' outboxes: the broker acknowledges "
            "and queues for the hub's persistent session. Watch the hub instead "
            "(`waferscope_hub_ingest_lag_seconds`, `waferscope_hub_ingest_pending`). Mosquitto "
            "drops messages beyond `max_queued_messages` for an absent client (the demo's "
            "broker allows 200000).",
            "When the store reaches `store.max_bytes`, published results are pruned first; "
            "unpublished ones never are. With only unpublished data left, ingest pauses: panel "
            "STORE FULL, `/readyz` 503, a critical `store-full` alert, gRPC `queue_full`, files "
            "wait in the hot folder. It resumes by itself once the outbox drains.",
        ),
        evidence=(
            ("edge/src/waferscope/edge/mqtt_link.py", "the broker did not deliver %d message(s)"),
            ("edge/src/waferscope/edge/mqtt_link.py", "sending again in %.1f s"),
            ("edge/src/waferscope/edge/mqtt_link.py", "NO_MATCHING_SUBSCRIBERS = 16"),
            ("edge/src/waferscope/edge/mqtt_link.py", "RETRY_MAX_S = 15.0"),
            ("appliance/src/waferscope/appliance/progress.py", "waiting at edges"),
            ("appliance/src/waferscope/appliance/broker.py", "max_queued_messages 200000"),
            ("edge/src/waferscope/edge/worker.py", 'rule_id="store-full"'),
        ),
    ),
    Situation(
        title="The hub's database is locked",
        intro="With SQLite (the default), a writer waits up to `database.busy_timeout_s` (30 s) "
        "for the database. The ingest then logs `ingest commit failed (database is locked); "
        "retrying in <s> s` and retries with a back-off up to 10 s, acknowledging nothing "
        "meanwhile, so nothing is lost: the broker keeps the messages "
        "(`waferscope_hub_ingest_db_errors_total` counts the failures).",
        items=(
            "Another program holds a write transaction on `hub.sqlite`: an `sqlite3` shell "
            "with an open transaction, a backup tool, a second hub (or `waferscope hub ...` "
            "command) with the same `data_dir`. `fuser <data_dir>/hub.sqlite` names them. "
            'For backups use SQLite\'s online backup (`sqlite3 hub.sqlite ".backup copy.sqlite"`).',
            "The database on a network file system: SQLite's WAL mode and the hub's write lock "
            "(`hub.sqlite.writelock`, which all hub processes of one installation queue on) "
            "need a local disk.",
            "Sustained load with several ingest workers: use PostgreSQL (`database.url`).",
            "The edge's `edge.sqlite` is just as private to its agent: reading it with "
            "`sqlite3 -readonly` is fine, writing while the agent runs is not (a write lock "
            "held for over 30 s stops the agent's processing thread, and files then wait in "
            "the hot folder until the agent is restarted). A full disk pauses ingest instead "
            "(log `the disk is full: ...`).",
        ),
        evidence=(
            ("hub/src/waferscope/hub/ingest/handler.py", "ingest commit failed (%s); retrying in"),
            ("hub/src/waferscope/hub/db/engine.py", ".writelock"),
            (
                "hub/src/waferscope/hub/config/storage.py",
                "How long a writer waits for a locked database.",
            ),
            ("edge/src/waferscope/edge/worker.py", "the disk is full: %s"),
            ("edge/src/waferscope/edge/store.py", "timeout=30"),
        ),
    ),
    Situation(
        title="A model bundle is refused (hash mismatch)",
        intro="`<bundle folder>: model.int8.onnx sha256 1a2b3c4d5e6f… does not match the "
        "manifest` (or `... is <n> bytes, manifest says <m>`, `listed file '<f>' is "
        "missing`): a file of the bundle differs from what its `manifest.json` records.",
        items=(
            "At start, the agent does not run: `waferscope: error: ...` (in the demo: "
            "`edge-NN exited (status 1) before ready ...` with the log tail).",
            "On a hot swap (`model.watch`, or `POST /api/model/reload`), the running model "
            "stays: log `model swap refused, keeping <version>: <reason>`, the panel's Model "
            "tile turns red with `refused: ...`, the reload call answers 409.",
            "Causes: a partial or text-mode copy, a file edited by hand, files of two bundles "
            "mixed, or a deployment that wrote `manifest.json` before the other files (the "
            "watcher reloads when the manifest changes: write it last).",
            "`waferscope edge check-bundle DIR` verifies a folder without running it; copy the "
            "whole folder again (`rsync -a`, `tar`). On the hub, `waferscope hub register-model` "
            "verifies the same way.",
        ),
        evidence=(
            ("protocols/src/waferscope/protocols/bundle.py", "does not match the manifest"),
            ("edge/src/waferscope/edge/engine.py", "model swap refused, keeping %s: %s"),
            ("edge/src/waferscope/edge/panel/templates/base.html.j2", "refused: "),
            ("edge/src/waferscope/edge/engine.py", "MANIFEST_NAME"),
        ),
    ),
    Situation(
        title="A file stays in the hot folder",
        intro="The agent takes a file from `ingest.hot_folder.path` (default "
        "`<data_dir>/incoming`; in the demo `<workdir>/edges/edge-NN/data/incoming`) when it is "
        "complete, and moves it to `done/` or `rejected/` once its results are stored. A file "
        "that stays:",
        items=(
            "Has a name that is never taken: starting with a dot, ending in `.reason.txt`, or "
            "in one of `ingest.hot_folder.ignore_suffixes` (`.part`, `.tmp`, `.partial`, "
            "`.filepart`, `.swp`). These are the names of files being written: rename the file "
            "to its final name when it is complete.",
            "Is still settling: a file written in place is taken once its modification time is "
            "`settle_s` (0.5 s) old; a file renamed into the folder is taken at once (Linux "
            "inotify). On a network share the agent does not see remote renames, so the "
            "periodic scan (`poll_interval_s`) and `settle_s` apply; a tester clock ahead of "
            "the agent's delays files by the difference.",
            "Is not a plain file: symbolic links and folders are skipped, and sub-folders are "
            "not searched.",
            "Waits because ingest is paused (STORE FULL on the panel) or the queue of "
            "`ingest.queue_files` files is full: it is taken when there is room.",
            "Fails with an internal error: it is tried again at every scan, and the log shows "
            "`processing failed; the jobs stay unprocessed` with a traceback (report it).",
            "Is in a folder the agent does not watch: check the hot folder in the log line "
            "`watching <folder> (inotify|polling)`, and that `ingest.hot_folder.enabled` is true.",
            "A file over `max_file_bytes` does not stay: it goes to `rejected/` (`too_large`).",
        ),
        evidence=(
            ("edge/src/waferscope/edge/hot_folder.py", 'name.startswith(".")'),
            ("edge/src/waferscope/edge/hot_folder.py", 'name.endswith(".reason.txt")'),
            ("edge/src/waferscope/edge/hot_folder.py", "is_file(follow_symlinks=False)"),
            ("edge/src/waferscope/edge/config/ingest.py", '".filepart", ".swp"'),
            ("edge/src/waferscope/edge/worker.py", "processing failed; the jobs stay unprocessed"),
            ("edge/src/waferscope/edge/hot_folder.py", '"watching %s (%s)"'),
        ),
    ),
    Situation(
        title="The demo stops, or a part does not start",
        intro="`demo: <part> exited (status <n>) before ready at <url>; its log <file>:` with "
        "the last lines of that log, or, while running, `stopping: <part> exited unexpectedly "
        f"(see <logs>)`. Every part logs to {_DEMO_LOGS}.",
        items=(
            "`demo: no wafer maps to replay: ...`: the simulator found no data; pass "
            "`--data FILE_OR_FOLDER`, set `WAFER_DATA_DIR`, or run `--no-simulator` and drop "
            "files yourself.",
            "`demo: 'waferscope hub migrate' failed: ...`: the hub's database in "
            "`<workdir>/hub/data` cannot be migrated (for instance one written by a newer "
            "version): start over with `--fresh`.",
            "An edge that exits at start: usually its bundle (`--model`) is refused; the log "
            "tail names the reason.",
            "Hub login: user `reviewer`, the password the demo printed at start (kept in "
            "`<workdir>/state.json`; `--fresh` makes a new one).",
        ),
        evidence=(
            ("appliance/src/waferscope/appliance/demo.py", "no wafer maps to replay"),
            ("appliance/src/waferscope/appliance/launcher.py", "failed: {detail[-1]"),
            ("appliance/src/waferscope/appliance/layout.py", 'REVIEWER = "reviewer"'),
        ),
    ),
)


# =========================================================================== discovery
@dataclass
class ErrorClass:
    part: str
    name: str
    path: str
    module: str
    bases: tuple[str, ...]
    line: int
    messages: set[tuple[str, str]] = field(default_factory=set)

    @property
    def key(self) -> str:
        return f"{self.part}.{self.name}"


@dataclass
class Found:
    classes: dict[str, ErrorClass] = field(default_factory=dict)
    codes: dict[str, set[str]] = field(default_factory=dict)
    statuses: dict[str, set[str]] = field(default_factory=dict)
    submit_statuses: set[str] = field(default_factory=set)
    grpc_codes: set[str] = field(default_factory=set)
    http: dict[str, set[str]] = field(default_factory=dict)
    config: dict[str, set[str]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # path -> source (for evidence)


@dataclass(frozen=True)
class Source:
    part: str
    path: str  # relative to the repository, '/'-separated
    text: str
    tree: ast.Module


def read_sources(root: Path) -> list[Source]:
    out = []
    for part in PARTS:
        base = root / part / "src"
        if not base.is_dir():
            continue
        for file in sorted(base.rglob("*.py")):
            rel = file.relative_to(root).as_posix()
            if "/pb/" in rel:
                continue  # generated protobuf code
            text = file.read_text(encoding="utf-8")
            out.append(Source(part, rel, text, ast.parse(text, filename=rel)))
    return out


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _module(path: str) -> str:
    inner = path.split("/src/", 1)[-1].removesuffix(".py")
    return inner.replace("/", ".").removesuffix(".__init__")


def find_classes(sources: Iterable[Source]) -> dict[str, ErrorClass]:
    """Every class whose base is an exception (found by name, to a fixed point)."""
    candidates = [
        (src, node)
        for src in sources
        for node in ast.walk(src.tree)
        if isinstance(node, ast.ClassDef)
    ]
    known = set(BUILTIN_BASES)
    found: dict[str, ErrorClass] = {}
    grew = True
    while grew:
        grew = False
        for src, node in candidates:
            key = f"{src.part}.{node.name}"
            bases = tuple(_name(b) for b in node.bases)
            if key in found or not any(b in known for b in bases):
                continue
            found[key] = ErrorClass(
                src.part, node.name, src.path, _module(src.path), bases, node.lineno
            )
            known.add(node.name)
            grew = True
    return dict(
        sorted(
            found.items(),
            key=lambda kv: (
                PARTS.index(kv[1].part),
                not kv[1].path.endswith("/errors.py"),  # the base classes first
                kv[1].path,
                kv[1].line,
            ),
        )
    )


def _shown_expression(node: ast.expr, text: str) -> str:
    """An expression inside a message, shown as ``<its source>`` (cut to 40 characters)."""
    src = " ".join((ast.get_source_segment(text, node) or "...").split())
    return f"<{src if len(src) <= 40 else src[:37] + '...'}>"


def _render(node: ast.expr, text: str) -> list[str] | None:
    """A message template: literal text kept, expressions shown as <expression>."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        out = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                out.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                shown = _shown_expression(value.value, text)
                out.append(f"'{shown}'" if value.conversion == ord("r") else shown)
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _render(node.left, text), _render(node.right, text)
        if left is None and right is None:
            return None
        return (left or [_shown_expression(node.left, text)]) + (
            right or [_shown_expression(node.right, text)]
        )
    return None


def template(node: ast.expr, text: str) -> str | None:
    parts = _render(node, text)
    if parts is None:
        return None
    message = " ".join("".join(parts).split())
    return message or None


def _message_arg(call: ast.Call) -> ast.expr | None:
    index = MESSAGE_ARG_INDEX.get(_name(call.func), 0)
    if len(call.args) > index and not isinstance(call.args[index], ast.Starred):
        return call.args[index]
    for kw in call.keywords:
        if kw.arg in MESSAGE_KEYWORDS:
            return kw.value
    return None


def collect_messages(sources: Iterable[Source], classes: dict[str, ErrorClass]) -> None:
    by_name: dict[str, list[str]] = {}
    for key, cls in classes.items():
        by_name.setdefault(cls.name, []).append(key)
    for src in sources:
        for node in ast.walk(src.tree):
            if not isinstance(node, ast.Call):
                continue
            keys = by_name.get(_name(node.func), [])
            own = f"{src.part}.{_name(node.func)}"
            target = own if own in keys else (keys[0] if len(keys) == 1 else None)
            arg = _message_arg(node)
            if target is None or arg is None:
                continue
            message = template(arg, src.text)
            if message:
                classes[target].messages.add((src.path, message))


def _strings(node: ast.expr | None) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value else []
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    return []


def _ints(node: ast.expr | None) -> list[int]:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _ints(node.body) + _ints(node.orelse)
    return []


CODE_ARGS = {"JobOutcome": 1, "_rejected": 3, "_error": 0, "WaferRejectedError": 0}


def find_codes(sources: Iterable[Source], found: Found) -> None:
    """Outcome codes and statuses: the values written where the edge decides them."""

    def add(table: dict[str, set[str]], values: list[str], path: str) -> None:
        for value in values:
            table.setdefault(value, set()).add(path)

    for src in sources:
        if src.path not in CODE_FILES:
            continue
        for node in ast.walk(src.tree):
            if isinstance(node, ast.Call):
                name = _name(node.func)
                index = CODE_ARGS.get(name)
                if index is not None and len(node.args) > index:
                    add(found.codes, _strings(node.args[index]), src.path)
                if name == "JobOutcome" and node.args:
                    add(found.statuses, _strings(node.args[0]), src.path)
                for kw in node.keywords:
                    if kw.arg == "error_code":
                        add(found.codes, _strings(kw.value), src.path)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                value = node.value
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in ("code", "error_code"):
                        add(found.codes, _strings(value), src.path)
                    elif (
                        isinstance(target, ast.Name)
                        and target.id == "problem"
                        and isinstance(value, ast.Tuple)
                        and value.elts
                    ):
                        add(found.codes, _strings(value.elts[0]), src.path)
                    elif isinstance(target, ast.Attribute) and target.attr == "status":
                        add(found.statuses, _strings(value), src.path)
        for node in ast.walk(src.tree):
            # the JobStatus enum's values, and the codes format_error_code returns
            if isinstance(node, ast.ClassDef) and node.name == "JobStatus":
                for item in node.body:
                    if isinstance(item, ast.Assign):
                        add(found.statuses, _strings(item.value), src.path)
            elif isinstance(node, ast.FunctionDef) and node.name == "format_error_code":
                for item in ast.walk(node):
                    if isinstance(item, ast.Return) and item.value is not None:
                        add(found.codes, _strings(item.value), src.path)
        if src.path == GRPC_FILE:
            for node in ast.walk(src.tree):
                if not isinstance(node, ast.Attribute):
                    continue
                if re.fullmatch(r"(SUBMIT_STATUS|WAFER_OUTCOME_STATUS)_[A-Z_]+", node.attr):
                    found.submit_statuses.add(node.attr)
                if _name(node.value) == "StatusCode":
                    found.grpc_codes.add(node.attr)


def find_http(sources: Iterable[Source], found: Found, problems: list[str]) -> None:
    """HTTP error statuses the hub's web app and the edge panel raise or answer with."""
    web = [s for s in sources if s.path.startswith(HTTP_FOLDERS)]
    status = dict(LITESTAR_STATUS)
    for src in web:  # local exception classes with a fixed status_code
        for node in ast.walk(src.tree):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if (
                        isinstance(stmt, ast.Assign)
                        and any(_name(t) == "status_code" for t in stmt.targets)
                        and _ints(stmt.value)
                    ):
                        status[node.name] = _ints(stmt.value)[0]
    for src in web:
        surface = "hub" if src.path.startswith("hub/") else "edge panel"
        codes: set[int] = set()
        for node in ast.walk(src.tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call | ast.Name):
                func = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                name = _name(func)
                if name in status:
                    codes.add(status[name])
                elif name.endswith("Exception"):
                    problems.append(
                        f"{src.path}: raises {name}: add its HTTP status to LITESTAR_STATUS"
                    )
            elif isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "status_code":
                        codes.update(c for c in _ints(kw.value) if c >= 400)
        for code in codes:
            found.http.setdefault(f"{surface} {code}", set()).add(src.path)


def find_config_reasons(sources: Iterable[Source], found: Found) -> None:
    for part, files in CONFIG_FILES.items():
        reasons: set[str] = set()
        for src in sources:
            if src.path not in files:
                continue
            for node in ast.walk(src.tree):
                if isinstance(node, ast.Call):
                    name = _name(node.func)
                    arg: ast.expr | None = None
                    if name == "Problem" and len(node.args) > 2:
                        arg = node.args[2]
                    elif name == "ValueError" and node.args:
                        arg = node.args[0]
                    message = template(arg, src.text) if arg is not None else None
                    if message:
                        reasons.add(message)
                elif isinstance(node, ast.Assign) and any(
                    _name(t) == "reason" for t in node.targets
                ):
                    reasons.update(_strings(node.value))
        found.config[part] = reasons


def discover(root: Path = REPO) -> tuple[Found, list[str]]:
    sources = read_sources(root)
    problems: list[str] = []
    found = Found(texts={s.path: s.text for s in sources})
    found.classes = find_classes(sources)
    collect_messages(sources, found.classes)
    find_codes(sources, found)
    find_http(sources, found, problems)
    find_config_reasons(sources, found)
    return found, problems


def check(found: Found, root: Path = REPO) -> list[str]:
    """Everything the code has and the entries lack, and entries the code no longer backs."""
    problems = []
    for key, cls in found.classes.items():
        if key not in ERRORS:
            problems.append(
                f"{cls.path}:{cls.line}: exception class {cls.name} has no entry: "
                f"add ERRORS[{key!r}] to scripts/gen_troubleshooting.py"
            )
    problems += [
        f"ERRORS[{k!r}]: no such exception class in the code"
        for k in ERRORS
        if k not in found.classes
    ]
    tables: list[tuple[str, str, dict[str, set[str]], Iterable[str]]] = [
        ("CODES", "outcome code", found.codes, CODES),
        ("STATUSES", "job status", found.statuses, STATUSES),
        ("HTTP", "HTTP status", found.http, HTTP),
    ]
    for label, what, seen, entries in tables:
        documented = set(entries)
        for value, paths in sorted(seen.items()):
            if value not in documented:
                problems.append(
                    f"{', '.join(sorted(paths))}: {what} {value!r} has no entry: "
                    f"add {label}[{value!r}] to scripts/gen_troubleshooting.py"
                )
        problems += [f"{label}[{v!r}]: not found in the code" for v in documented - set(seen)]
    for value in sorted(found.submit_statuses - set(SUBMIT_STATUSES)):
        problems.append(f"{GRPC_FILE}: {value} has no entry in SUBMIT_STATUSES")
    problems += [
        f"SUBMIT_STATUSES[{v!r}]: not found in {GRPC_FILE}"
        for v in sorted(set(SUBMIT_STATUSES) - found.submit_statuses)
    ]
    for value in sorted(found.grpc_codes - set(GRPC_CODES)):
        problems.append(f"{GRPC_FILE}: gRPC status {value} has no entry in GRPC_CODES")
    for situation in SITUATIONS:
        for path, fragment in situation.evidence:
            text = found.texts.get(path)
            if text is None:
                file = root / path
                text = file.read_text(encoding="utf-8") if file.is_file() else ""
            if fragment not in text:
                problems.append(
                    f"SITUATIONS[{situation.title!r}]: {fragment!r} is no longer in {path}: "
                    "update the text"
                )
    return problems


# =========================================================================== rendering
def _wrap(text: str, first: str = "", rest: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        width=100,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [first.rstrip()]


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def _entry_lines(entry: Entry) -> list[str]:
    lines: list[str] = []
    for label, text in (
        ("Message", entry.shape),
        ("Shows up", entry.shows),
        ("Means", entry.means),
        ("What to do", entry.todo),
    ):
        if text:
            lines += _wrap(f"**{label}:** {text}", "- ", "  ")
    return lines


def _messages(messages: set[tuple[str, str]], title: str) -> list[str]:
    if not messages:
        return []
    lines = ["", f"<details><summary>{title} ({len(messages)})</summary>", ""]
    for path, message in sorted(messages):
        lines += _wrap(f"{_code(message)} — {path.split('/src/', 1)[-1]}", "- ", "  ")
    return [*lines, "", "</details>"]


HEADER = """\
<!-- Generated by scripts/gen_troubleshooting.py from the code: do not edit by hand.
     Change the entries in the script and run `just docs`. -->

# Troubleshooting

Every error waferscope raises on purpose, every code an edge gives a file or a wafer, the gRPC
and HTTP statuses, and the configuration problems, each with where it shows up, what it means
and what to do. The page is generated from the code (`scripts/gen_troubleshooting.py`, `just
docs`): the generator finds the error classes, codes and statuses in the sources, quotes the
messages they are raised with, and fails when one of them has no entry, so nothing new goes
undocumented. How the parts fit together: [architecture.md](architecture.md); the demo:
[demo.md](demo.md); metrics and monitoring: [observability.md](observability.md).

- [Common situations](#common-situations)
- [Where messages show up](#where-messages-show-up)
- [Edge: what happened to a file](#edge-what-happened-to-a-file)
- [gRPC: TesterIngest answers](#grpc-testeringest-answers)
- [HTTP statuses](#http-statuses)
- [Configuration errors](#configuration-errors)
- [Error classes](#error-classes)
"""

WHERE: tuple[tuple[str, str], ...] = (
    (
        "any `waferscope` command",
        "`waferscope: error: <message>` on stderr, exit status 1 (the other files of the "
        "command are still processed); 2: a usage error, with click's message; 70: "
        "`waferscope: internal error: <Type>: <message> (this is a bug; ...)`; 130: interrupted",
    ),
    (
        "`waferscope hub ...`",
        "configuration problems one per line (`<file>:<line>: <key>: <reason>`), exit status 2 "
        "(1 for `validate-config`); user and registry commands: `error: <message>`, exit status 1",
    ),
    (
        "`waferscope demo`",
        "`demo: <message>`, exit status 1; while running: `stopping: <parts> exited "
        "unexpectedly (see <logs>)`",
    ),
    (
        "edge hot folder",
        "`done/` or `rejected/<name>` with `<name>.reason.txt` beside it (below)",
    ),
    (
        "edge gRPC",
        "`SubmitResponse.status`, `SubmitResponse.error` (`code`, `message`, `location`) and "
        "one `WaferOutcome` per wafer; transport problems as gRPC status codes",
    ),
    (
        "alerts",
        "edge alerts (`parse_failure` for a rejected file, `store-full`, pattern rules) on the "
        "panel, on the hub's *Alerts* page and at the hub's webhooks / MES",
    ),
    (
        "logs",
        "edge and hub log to stderr ([observability.md](observability.md)); under systemd, the "
        "journal; in the demo, one file per process in `<workdir>/logs/`",
    ),
    (
        "HTTP",
        'hub API: `{"status_code": <n>, "detail": "<message>"}`; hub pages: an error page; '
        "edge panel: below",
    ),
)

REASON_FILE = """\
A file's `.reason.txt` (in `rejected/`, or in `done/` for a `partial` file) holds one line per
item; `where:` and `wafer #` lines only when there are some. A file over the size limit gets the
`file:` and `error:` lines only; a duplicate, only its message:

```
file: <name>
sha256: <hex digest of the bytes>
status: rejected | partial
error: <code>: <message>
where: <source>: line <n>, byte <offset>, <record>
wafer #<index>: <code>: <message>
```
"""


def render(found: Found) -> str:
    out: list[str] = [HEADER, "## Common situations", ""]
    for s in SITUATIONS:
        out += [f"### {s.title}", "", *_wrap(s.intro), ""]
        for item in s.items:
            out += _wrap(item, "- ", "  ")
        out.append("")
    out += ["## Where messages show up", "", "| where | what it looks like |", "| --- | --- |"]
    out += [f"| {where} | {what} |" for where, what in WHERE]
    out += ["", REASON_FILE]

    out += ["## Edge: what happened to a file", ""]
    out += _wrap(
        "Each file an edge takes (hot folder or gRPC) ends in one of these statuses "
        "(`waferscope_edge_files_total{origin,status}` counts the accepted, partial and "
        "rejected ones):"
    )
    out += [
        "",
        "| status | where the file goes / what gRPC answers | meaning |",
        "| --- | --- | --- |",
    ]
    for status, e in STATUSES.items():
        out.append(f"| `{status}` | {e.shows} | {e.means} |")
    out += [""]
    out += _wrap(
        "The codes below appear in a reason file's `error:` and `wafer #` lines, in "
        "`SubmitResponse.error.code` / `WaferOutcome.error.code`, in the title of a "
        "`parse_failure` alert (`file <name> rejected (<code>)`) and in the edge's `files` "
        "table."
    )
    out.append("")
    for code, e in CODES.items():
        paths = ", ".join(p.split("/src/", 1)[-1] for p in sorted(found.codes.get(code, ())))
        out += [f"### `{code}`", "", *_entry_lines(e), f"- *Set in:* {paths}", ""]

    out += ["## gRPC: TesterIngest answers", ""]
    out += _wrap(
        "Content problems are answered in the `SubmitResponse`, so one bad file does not end "
        "a `SubmitStream`; a call is answered once its wafers are classified and stored. "
        "Statuses:"
    )
    out += ["", "| status | meaning |", "| --- | --- |"]
    out += [f"| `{k}` | {v} |" for k, v in SUBMIT_STATUSES.items()]
    out += [""]
    set_here = sorted(found.grpc_codes)
    out += _wrap(
        "gRPC status codes a client can meet (the service sets "
        + (", ".join(f"`{c}`" for c in set_here) if set_here else "none of them itself")
        + "; they come from gRPC):"
    )
    out += ["", "| code | meaning |", "| --- | --- |"]
    out += [f"| `{k}` | {v} |" for k, v in GRPC_CODES.items()]
    out += [""]

    out += ["## HTTP statuses", ""]
    out += ["| where | status | answer | meaning | what to do |", "| --- | --- | --- | --- | --- |"]
    for key, e in sorted(HTTP.items(), key=lambda kv: (kv[0].startswith("edge"), kv[0])):
        surface, status = key.rsplit(" ", 1)
        out.append(f"| {surface}: {e.shows} | {status} | {e.shape} | {e.means} | {e.todo} |")
    out += [""]

    out += ["## Configuration errors", ""]
    out += _wrap(
        "The edge and the hub read TOML or YAML and report every problem at once, each as "
        "`<file>:<line>: <key>: <reason>` (or, for an environment override, "
        "`<VARIABLE>: <key>: <reason>`). Check a file without starting anything: "
        "`waferscope edge validate-config FILE`, `waferscope hub validate-config FILE`. Keys "
        "and ranges: [edge-config.md](edge-config.md), [hub-config.md](hub-config.md); "
        "overview: [configuration.md](configuration.md). Besides the range checks of each key "
        "(e.g. `Input should be greater than 0 (got -1)`), the reasons are:"
    )
    for part in ("edge", "hub"):
        out += ["", f"**{part}** ({len(found.config.get(part, ()))}):", ""]
        out += [f"- {_code(r)}" for r in sorted(found.config.get(part, ()))]
    out += [""]
    out += _wrap(
        "`unknown key` is usually a typo or a key from another section; a key of another "
        "version of waferscope is refused rather than ignored. The demo writes its parts' "
        "configurations itself: a configuration error there is a bug of the launcher."
    )
    out += [""]

    out += ["## Error classes", ""]
    out += _wrap(
        "Grouped by part. Each lists the messages it is raised with in the code (expressions "
        "in `<...>`)."
    )
    for part in PARTS:
        classes = [c for c in found.classes.values() if c.part == part]
        if not classes:
            continue
        out += ["", f"### {part}"]
        for cls in classes:
            entry = ERRORS[cls.key]
            bases = ", ".join(f"`{b}`" for b in cls.bases)
            out += ["", f"#### {part}: `{cls.name}`", ""]
            out += [f"*`{cls.module}.{cls.name}` (subclass of {bases})*", ""]
            out += _entry_lines(entry)
            out += _messages(cls.messages, "Messages in the code")
    out.append("")
    return "\n".join(out)


# =========================================================================== main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail when the page is stale")
    parser.add_argument("--stdout", action="store_true", help="print the page")
    args = parser.parse_args(argv)
    found, problems = discover(REPO)
    problems += check(found)
    if problems:
        for problem in problems:
            print(f"gen_troubleshooting: {problem}", file=sys.stderr)
        return 1
    text = render(found)
    target = REPO / OUTPUT
    if args.stdout:
        sys.stdout.write(text)
    elif args.check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(), "committed", "generated", lineterm=""
            )
            print(
                f"gen_troubleshooting: {OUTPUT.as_posix()} is stale: run `just docs` "
                "(python scripts/gen_troubleshooting.py)\n" + "\n".join(list(diff)[:60]),
                file=sys.stderr,
            )
            return 1
    else:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {OUTPUT.as_posix()}")
    return 0


def iter_problems(root: Path) -> Iterator[str]:
    """Every problem the generator would report for the sources under ``root`` (tests)."""
    found, problems = discover(root)
    yield from problems
    yield from check(found, root)


if __name__ == "__main__":
    raise SystemExit(main())
