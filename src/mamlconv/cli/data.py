"""``mamlconv data``: verify the Omniglot / MiniImagenet installation, or build it from the
official inputs (never a download).

    mamlconv data check [--root DIR] [--rehash] [--decode]
    mamlconv data import-omniglot DIR [--out-root ROOT]
    mamlconv data import-miniimagenet IMAGES_DIR CSV_DIR [--out-root ROOT] [--splits train,val]
    mamlconv data shard SRC OUT_DIR [--max-mib N]

The data root (a folder holding ``omniglot/`` and ``miniimagenet/``) is ``--root`` when given;
otherwise the files are looked up in ``MAMLCONV_DATA`` (if set), then in the user cache
``~/.cache/mamlconv/data``. Imports write below ``--out-root``, else ``MAMLCONV_DATA``, else
``~/.cache/mamlconv/data``, and report whether the result reproduces the shipped sha256.

A verified file is hashed in full once; later runs re-hash it only when its size, mtime, ctime
or the sha256 of its first and last MiB change. ``check --rehash`` hashes every file (and, with
``--decode``, every decoded MiniImagenet cache) in full again.

``shard`` splits a data file into sha256-checked parts of at most ``--max-mib`` MiB with a
manifest beside them; a data root holding the parts instead of the file is read as if it held
the file (:mod:`mamlconv.experiments.data.shards`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mamlconv.cli._args import UsageError, positive_float


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="check or import the Omniglot and MiniImagenet files",
        description=__doc__.split("\n\n")[0],
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(parser))

    check = sub.add_parser("check", help="verify sizes and sha256 of every data file")
    check.add_argument(
        "--root",
        type=Path,
        default=None,
        help="data root (default: MAMLCONV_DATA, then ~/.cache/mamlconv/data)",
    )
    check.add_argument(
        "--rehash",
        action="store_true",
        help="hash every file in full again (without it, a file verified before is trusted "
        "while its size, times and first and last MiB are unchanged)",
    )
    check.add_argument(
        "--decode",
        action="store_true",
        help="also decode the MiniImagenet JPEGs into the cache (once; about 10 s), or verify "
        "the decoded arrays against their recorded sha256",
    )
    check.add_argument("--cache", type=Path, default=None, help="cache folder (MAMLCONV_CACHE)")
    check.set_defaults(func=run)

    omni = sub.add_parser(
        "import-omniglot",
        help="build omniglot/omniglot.npz from images_background.zip + images_evaluation.zip",
    )
    omni.add_argument("src", type=Path, metavar="DIR", help="folder holding the two zips")
    omni.add_argument("--out-root", type=Path, default=None, help="data root to write into")
    omni.set_defaults(func=run)

    mini = sub.add_parser(
        "import-miniimagenet",
        help="build miniimagenet/miniimagenet_<split>.npz from the 84x84 JPEGs and split CSVs",
    )
    mini.add_argument("images", type=Path, metavar="IMAGES_DIR", help="folder of the .jpg files")
    mini.add_argument("csvs", type=Path, metavar="CSV_DIR", help="folder of train/val/test.csv")
    mini.add_argument("--out-root", type=Path, default=None, help="data root to write into")
    mini.add_argument(
        "--splits",
        default="train,val,test",
        help="comma-separated subset of train,val,test (default: all three)",
    )
    mini.set_defaults(func=run)

    shard = sub.add_parser(
        "shard",
        help="split a data file into sha256-checked parts (read back transparently on load)",
    )
    shard.add_argument(
        "src", type=Path, metavar="SRC", help="the file, e.g. miniimagenet_train.npz"
    )
    shard.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder for parts + manifest")
    shard.add_argument(
        "--max-mib",
        type=positive_float,
        default=None,
        metavar="N",
        help="largest part in MiB (default 48)",
    )
    shard.set_defaults(func=run)
    parser.set_defaults(func=_no_action, _data_parser=parser)


def _no_action(args: argparse.Namespace) -> int:
    args._data_parser.print_help()
    return 2


def _out_root(arg: Path | None) -> Path:
    from mamlconv.experiments import data

    if arg is not None:
        return arg.expanduser()
    if os.environ.get(data.DATA_ENV):
        return Path(os.environ[data.DATA_ENV]).expanduser()
    return data.USER_DATA_ROOT


def _report_written(path: Path, key: str) -> bool:
    from mamlconv.experiments import data

    digest = data.sha256_file(path)
    ok = digest == data.SHIPPED[key].sha256
    verdict = "matches the shipped sha256" if ok else "DIFFERS from the shipped sha256"
    print(f"wrote {path} ({path.stat().st_size} bytes, sha256 {digest}): {verdict}")
    return ok


def run(args: argparse.Namespace) -> int:
    from mamlconv.experiments import data

    try:
        if args.data_command == "check":
            return _check(args)
        if args.data_command == "import-omniglot":
            if not args.src.is_dir():
                raise UsageError(f"not a folder: {str(args.src)!r}")
            out = _out_root(args.out_root) / data.SHIPPED["omniglot"].relpath
            path = data.import_omniglot(args.src, out)
            return 0 if _report_written(path, "omniglot") else 1
        if args.data_command == "import-miniimagenet":
            for folder in (args.images, args.csvs):
                if not folder.is_dir():
                    raise UsageError(f"not a folder: {str(folder)!r}")
            splits = [s.strip() for s in args.splits.split(",") if s.strip()]
            bad = [s for s in splits if s not in data.MINIIMAGENET_SPLITS]
            if bad or not splits:
                raise UsageError(f"--splits takes a subset of train,val,test, got {args.splits!r}")
            out_dir = _out_root(args.out_root) / "miniimagenet"
            ok = True
            for split in splits:
                (path,) = data.import_miniimagenet(args.images, args.csvs, out_dir, splits=[split])
                ok &= _report_written(path, f"miniimagenet_{split}")
            return 0 if ok else 1
        if args.data_command == "shard":
            return _shard(args)
    except data.DataError as exc:
        raise UsageError(str(exc)) from None
    raise AssertionError(f"unknown data action {args.data_command!r}")


def _check(args: argparse.Namespace) -> int:
    from mamlconv.experiments import data

    print(f"data looked up in {data.describe_lookup(args.root)}")
    results = data.check_installation(args.root, cache=args.cache, rehash=args.rehash)
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.key}: {r.message if not r.ok else r.path}")
    failed = [r for r in results if not r.ok]
    if args.decode:
        for split in data.MINIIMAGENET_SPLITS:
            if any(r.key == f"miniimagenet_{split}" for r in failed):
                continue
            r = data.check_decoded(split, args.root, cache=args.cache, rehash=args.rehash)
            print(f"{'ok  ' if r.ok else 'FAIL'} decoded {split}: {r.message}")
            if not r.ok:
                failed.append(r)
    if failed:
        sys.stderr.write(f"mamlconv data check: {len(failed)} check(s) failed\n")
        return 1
    decoded = f", {len(data.MINIIMAGENET_SPLITS)} decoded caches verified" if args.decode else ""
    print(f"all {len(results)} data files verified{decoded}")
    return 0


MAX_SHARDS = 99
"""Most parts `data shard` writes (their names count to two digits)."""


def _shard(args: argparse.Namespace) -> int:
    from mamlconv.experiments.data import shards

    if not args.src.is_file():
        raise UsageError(f"{args.src} is not a file; pass the data file to split")
    max_mib = shards.DEFAULT_MAX_MIB if args.max_mib is None else args.max_mib
    max_bytes = max(1, int(max_mib * 2**20))
    if -(-args.src.stat().st_size // max_bytes) > MAX_SHARDS:
        raise UsageError(
            f"--max-mib {max_mib:g} would split {args.src} into more than {MAX_SHARDS} parts; "
            "choose a larger size"
        )
    manifest = shards.shard_file(args.src, args.out_dir, max_bytes=max_bytes)
    for part in manifest.parts:
        print(f"{part.name}  {part.size} bytes  sha256 {part.sha256}")
    n = len(manifest.parts)
    print(f"{manifest.name}{shards.MANIFEST_SUFFIX}: {n} parts of {manifest.name}")
    return 0
