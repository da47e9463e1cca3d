"""Entry point of the `waferscope` command.

Subcommands come from whichever parts are installed: every distribution registers a function
``register(app: typer.Typer) -> None`` in the ``waferscope.commands`` entry-point group. An
edge-only box therefore shows the edge's commands and not the trainer's.

Errors a user can cause (:class:`~waferscope.protocols.errors.WaferscopeError`) are printed to
stderr as one line, ``waferscope: error: ...``, with exit status 1; usage errors exit 2.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer

from waferscope.protocols.errors import WaferscopeError

EXIT_ERROR = 1


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="waferscope",
        help="waferscope: wafer-map defect-pattern recognition at the fab edge.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    for ep in sorted(entry_points(group="waferscope.commands"), key=lambda e: e.name):
        register = ep.load()
        register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    try:
        app = build_app()
        rc = app(args=argv, prog_name="waferscope", standalone_mode=False)
    except WaferscopeError as exc:
        print(f"waferscope: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("waferscope: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `waferscope inspect ... | head`
        return 0
    except OSError as exc:  # the machine, not the program: a port in use, a permission, a disk
        print(f"waferscope: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except SystemExit as exc:  # raised by typer/click for --help and usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_ERROR
    except Exception as exc:
        # Usage errors (bad option values, missing arguments) come from click, which typer may
        # vendor under another module name: recognise them by shape, not by import path.
        show = getattr(exc, "show", None)
        exit_code = getattr(exc, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            return exit_code
        if type(exc).__name__ == "Abort":
            print("waferscope: aborted", file=sys.stderr)
            return EXIT_ERROR
        print(
            f"waferscope: internal error: {type(exc).__name__}: {exc} "
            "(this is a bug; please report it with the input that caused it)",
            file=sys.stderr,
        )
        return 70
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
