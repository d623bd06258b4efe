"""``rs-repro``: run one chapter or the whole book with a parameter profile.

Examples
--------
``rs-repro run theory --profile default -p sigmas '[0.05, 0.5]'``
``rs-repro compute fig5_attacks --profile fashion --workers 2`` (no Jupyter: what a GPU machine or a cluster runs)
``rs-repro book --profile smoke``
``rs-repro params theory``
``rs-repro export --profile imagenet results-imagenet.tar.gz`` (on the machine that ran the profile), then
``rs-repro import results-imagenet.tar.gz`` (where the book is built)
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from rs_repro.pipeline import headless, parameters, paths, provision, publish


def _engine_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run the work units on a local Dask cluster of N worker processes (0: in-process)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run the work units on the Dask cluster at ADDRESS, e.g. tcp://10.0.0.1:8786 "
                            "(default: $RS_REPRO_SCHEDULER)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rs-repro", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    compute = sub.add_parser("compute", help="compute one chapter's units, record and tables, without Jupyter")
    compute.add_argument("stem", help="chapter stem, e.g. fig5_attacks")
    compute.add_argument("--profile", default="default", choices=paths.PROFILES)
    compute.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                         help="override one parameter (repeatable); lists as YAML, e.g. '[10, 50]'")
    _engine_arguments(compute)

    run = sub.add_parser("run", help="compute one chapter (what is not cached), render and publish its page, "
                                     "rebuild the book")
    run.add_argument("stem", help="chapter stem, e.g. theory")
    run.add_argument("--profile", default="default", choices=paths.PROFILES)
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                     help="override one parameter (repeatable); lists as YAML, e.g. '[10, 50]'")
    run.add_argument("--no-build", action="store_true", help="do not rebuild the HTML book afterwards")
    run.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds")
    _engine_arguments(run)

    whole = sub.add_parser("book", help="execute every stale chapter, then build the HTML book")
    whole.add_argument("--profile", default="default", choices=paths.PROFILES)
    whole.add_argument("--force", action="store_true", help="execute every chapter, stale or not")
    whole.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds")
    _engine_arguments(whole)

    params = sub.add_parser("params", help="list a chapter's parameters with their types and profile values")
    params.add_argument("stem")
    params.add_argument("--profile", default="default", choices=paths.PROFILES)

    out = sub.add_parser("export", help="pack a profile's measurements, pages, figures and tables with their "
                                        "provenance, for the machine that builds the book")
    out.add_argument("--profile", required=True, choices=paths.PROFILES)
    out.add_argument("archive", help="the .tar.gz to write")

    into = sub.add_parser("import", help="bring back an archive of rs-repro export (its profile's column of "
                                         "the claims table)")
    into.add_argument("archive")
    into.add_argument("--replace", action="store_true",
                      help="overwrite measurements of the same profile computed on this machine")

    sub.add_parser("list", help="list the chapters in book order")
    return parser


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as an interrupt, so that the kernel is shut down and its temporary folder removed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rs-repro`` console script; returns the exit status.

    An error a user can fix (a bad parameter or archive, missing data, a file that cannot be written) is
    one line on standard error and exit status 2; an interrupt (Ctrl-C, or SIGTERM) shuts the kernel and
    the local cluster down, keeps every finished work unit in the cache and exits with 130.
    """
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        if args.command == "compute":
            overrides = parameters.parse_overrides(args.stem, [tuple(p) for p in args.parameter])
            provision.ensure({**parameters.profile_values(args.stem, args.profile), **overrides})
            manifest = headless.compute_chapter(args.stem, args.profile, overrides, workers=args.workers,
                                                scheduler=args.scheduler)
            print(f"[rs-repro] {args.stem}: tables and their manifest in {manifest.parent}", flush=True)
        elif args.command == "run":
            from rs_repro.pipeline import book

            overrides = parameters.parse_overrides(args.stem, [tuple(p) for p in args.parameter])
            provision.ensure({**parameters.profile_values(args.stem, args.profile), **overrides})
            where = {"workers": args.workers, "scheduler": args.scheduler}
            page = book.run_chapter(args.stem, args.profile, overrides, timeout=args.timeout, **where)
            print(f"[rs-repro] {args.stem}: page written to {page}", flush=True)
            if not args.no_build:
                for stem in parameters.chapters():
                    if book.page_digest(stem) is None:
                        print(f"[rs-repro] running missing chapter {stem} ({args.profile})", flush=True)
                        book.run_chapter(stem, args.profile, timeout=args.timeout, **where)
                print(f"[rs-repro] book: {book.build_html(strict=True)}", flush=True)
        elif args.command == "book":
            from rs_repro.pipeline import book

            profile = [parameters.profile_values(stem, args.profile) for stem in parameters.chapters()]
            needed = {(values.get("dataset"), values.get("data_dir")) for values in profile}
            for dataset, data_dir in sorted(needed, key=str):  # each dataset's files looked for once
                provision.ensure({"dataset": dataset, "data_dir": data_dir})
            page = book.make_book(args.profile, force=args.force, timeout=args.timeout, workers=args.workers,
                                  scheduler=args.scheduler)
            print(f"[rs-repro] book: {page}")
        elif args.command == "params":
            values = parameters.profile_values(args.stem, args.profile)
            for p in parameters.parameters(args.stem).values():
                print(f"{p.name}: {p.annotation} = {values[p.name]!r}   # {p.help}")
        elif args.command == "export":
            print(f"[rs-repro] {args.profile}: {publish.export(args.profile, args.archive)}")
        elif args.command == "import":
            manifest = publish.import_archive(args.archive, replace=args.replace)
            print(f"[rs-repro] {publish.summary(manifest)}")
        elif args.command == "list":
            print("\n".join(parameters.chapters()))
    except (parameters.ChapterError, provision.MissingData, publish.ArchiveError) as exc:
        print(f"rs-repro: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only build folder, a full disk: name the file
        where = f" {exc.filename}" if exc.filename else ""
        print(f"rs-repro: error: cannot access{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rs-repro: interrupted; the finished work units are kept in the cache and a re-run computes only "
              "the others", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
