"""Datastore commands: select, repository, purge, summary, ls, probe, category, cat, lsa."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ess.cli.common import add_command, add_json_option, note, out, out_json
from ess.workspace import Workspace

LABEL_HELP = "datastore label (default: the selected one)"


def register(subparsers: Any) -> None:
    _register_select(subparsers)
    _register_summary(subparsers)
    p = add_command(
        subparsers,
        "repository",
        help="list the registered datastores",
        example="ess repository\ness repository --json",
        handler=cmd_repository,
    )
    add_json_option(p, "repository")
    p = add_command(
        subparsers,
        "purge",
        help="forget a datastore's categories (data untouched)",
        example="ess purge local",
        handler=cmd_purge,
    )
    p.add_argument("label", help="the datastore label (see ess repository)")
    _register_ls(subparsers)
    _register_probe(subparsers)
    _register_category(subparsers)
    p = add_command(
        subparsers,
        "cat",
        help="print a datastore file to stdout",
        example="ess cat --decompress /data/browse_20140901.gz",
        handler=cmd_cat,
    )
    p.add_argument("--label", help=LABEL_HELP)
    p.add_argument("--decompress", action="store_true", help="decompress by content")
    p.add_argument("filename", help="file path in the datastore")
    p = add_command(
        subparsers,
        "lsa",
        help="list the members of an archive file",
        example="ess lsa logs/all.tar.gz --pattern '*0114* *0115*'",
        handler=cmd_lsa,
    )
    p.add_argument("--pattern", help="glob(s) selecting members")
    p.add_argument("--label", help=LABEL_HELP)
    p.add_argument("filename", help="archive file (zip, tar, tar.gz, tar.bz2) in the datastore")


# ---------------------------------------------------------------------- select & co.
def _register_select(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "select",
        help="register / choose the active datastore",
        example="ess select local\ness select s3://my-bucket --credentials=~/my_credentials.csv",
        handler=cmd_select,
    )
    p.add_argument("--region", help="AWS region of the bucket (default: the bucket's own)")
    creds = p.add_mutually_exclusive_group()
    creds.add_argument("--credentials", help="AWS console credentials CSV")
    creds.add_argument("--aws_access_key", help="AWS access key id")
    creds.add_argument("--account_name", help="Azure account (not supported yet)")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--aws_secret_access_key", help="AWS secret access key")
    secret.add_argument("--account_key", help="Azure key (not supported yet)")
    p.add_argument("--label", help="name to remember the datastore by")
    p.add_argument("--overwrite", action="store_true", help="replace stored credentials")
    p.add_argument("source", help="local, s3://bucket[/prefix] or a registered label")


def cmd_select(args: argparse.Namespace) -> int:
    from ess.datastore.registry import Registry, credentials_from_args
    from ess.errors import NotSupportedError

    if args.account_name or args.account_key:
        raise NotSupportedError("Azure blob datastores (--account_name/--account_key)")
    creds = credentials_from_args(args.credentials, args.aws_access_key, args.aws_secret_access_key)
    result = Registry(Workspace.from_env()).select(
        args.source,
        credentials=creds,
        label=args.label,
        overwrite=args.overwrite,
        region=args.region,
    )
    for warning in result.warnings:
        note(f"ess select: {warning}")
    return 0


def cmd_repository(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from ess.datastore.registry import Registry

    registry = Registry(Workspace.from_env())
    current = registry.current_label()
    if args.json:
        stores = [
            {"label": label, "kind": d.kind, "root": d.root, "region": d.region,
             "location": d.describe(), "selected": label == current}
            for label, d in sorted(registry.all().items())
        ]  # fmt: skip
        out_json({"selected": current, "datastores": stores})
        return 0
    rows = [
        ["*" if label == current else "", label, d.kind, d.describe()]
        for label, d in sorted(registry.all().items())
    ]
    out(tabulate(rows, headers=["", "Label", "Type", "Location"]))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from ess.datastore.registry import Registry

    Registry(Workspace.from_env()).purge(args.label)
    return 0


def _register_summary(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "summary",
        help="summarize a datastore, a category or one attribute",
        example="ess summary\ness summary browse\ness summary browse columnspec\n"
        "ess summary --json",
        handler=cmd_summary,
    )
    p.add_argument("--label", nargs="?", help=LABEL_HELP)
    p.add_argument("--scan", action="store_true", help="rescan the datastore first")
    p.add_argument("--short", action="store_true", help="with --scan: only totals")
    add_json_option(p, "summary")
    p.add_argument("category", nargs="?", help="summarize only this category")
    p.add_argument(
        "attribute",
        nargs="?",
        choices=["pkey", "columnspec", "schema", "delimiter", "compression", "preprocess"],
        help="print only this attribute of the category",
    )


def cmd_summary(args: argparse.Namespace) -> int:
    from ess.datastore import summary
    from ess.datastore.api import open_catalog

    catalog = open_catalog(Workspace.from_env(), args.label)
    if args.category:
        category = catalog.get(args.category)
        if args.attribute:
            if args.json:
                value = summary.attribute_value(category, args.attribute)
                out_json({"category": category.name, "attribute": args.attribute, "value": value})
            else:
                sys.stdout.write(summary.attribute(category, args.attribute))
            return 0
        files = catalog.files(category.name, refresh=args.scan or None)
        category_stats = summary.CategoryStats.of(category.name, files)
        if args.json:
            out_json(summary.category_json(category, category_stats))
        else:
            sys.stdout.write(summary.category_summary(category, category_stats))
        return 0
    stats = [
        summary.CategoryStats.of(
            name,
            catalog.files(name, refresh=args.scan) if args.scan else catalog.cached_files(name),
        )
        for name in catalog.all()
    ]
    if args.json:  # the totals are in the document: --short changes nothing
        out_json(summary.datastore_json(catalog.datastore.label, stats))
        return 0
    sys.stdout.write(summary.datastore_summary(catalog.datastore.label, stats, short=args.short))
    return 0


# ---------------------------------------------------------------------- ls / probe
def _register_ls(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "ls",
        help="list datastore files (name, size, date; tab-separated)",
        example='ess ls -r "$PWD/diy_woodworking/*browse*"\ness ls --cat browse --json',
        handler=cmd_ls,
    )
    p.add_argument("--exclude", nargs="?", help="glob(s) of files to leave out")
    p.add_argument("--cat", help="list the files of this category")
    p.add_argument("--label", help=LABEL_HELP)
    p.add_argument("-r", "--recursive", action="store_true", help="descend into directories")
    p.add_argument("--dateregex", help="auto | none | a rule with [:%%Y:]-style tokens")
    p.add_argument("--limit", nargs="?", type=int, help="list at most LIMIT files")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--nameonly", action="store_true", help="names only")
    shape.add_argument("--nosize", action="store_true", help="names and dates")
    shape.add_argument("--nodate", action="store_true", help="names and sizes")
    add_json_option(shape, "ls")
    p.add_argument("pattern", nargs="?", help="glob(s) or a directory (default: the root)")


def cmd_ls(args: argparse.Namespace) -> int:
    from ess.datastore.listing import ListRequest, list_files

    entries = list_files(
        Workspace.from_env(),
        ListRequest(
            pattern=args.pattern,
            exclude=args.exclude,
            category=args.cat,
            label=args.label,
            recursive=args.recursive,
            dateregex=args.dateregex,
            limit=args.limit,
        ),
    )
    if args.json:  # a directory has no size (-1 in the text) and no date
        files = [
            {"path": e.path, "directory": e.size < 0, "size": e.size if e.size >= 0 else None,
             "date": e.date or None}
            for e in entries
        ]  # fmt: skip
        out_json({"files": files})
        return 0
    for entry in entries:
        if args.nameonly:
            out(entry.path)
        elif args.nosize:
            out(f"{entry.path}\t{entry.date}")
        elif args.nodate:
            out(f"{entry.path}\t{entry.size}")
        else:
            out(f"{entry.path}\t{entry.size}\t{entry.date}")
    return 0


def _register_probe(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "probe",
        help="detect compression, delimiter and columns",
        example="ess probe browse\ness probe purchase --file /data/purchase_20140901.gz",
        handler=cmd_probe,
    )
    p.add_argument("--file", help="probe this file (default: the category's largest)")
    p.add_argument("--label", nargs="?", help=LABEL_HELP)
    p.add_argument("--pcmd", nargs="?", help="command printing one Type:Name per line")
    p.add_argument("--size", nargs="?", type=int, help="bytes sampled (default 1 MiB)")
    p.add_argument("category", help="the category to probe")


def cmd_probe(args: argparse.Namespace) -> int:
    from ess.datastore.api import probe_category

    result = probe_category(
        Workspace.from_env(),
        args.category,
        label=args.label,
        file=args.file,
        pcmd=args.pcmd,
        size=args.size,
    )
    out(f"File:        {result.file}")
    out(f"Compression: {result.compression}")
    out(f"Delimiter:   {result.delimiter}")
    out(f"Header:      {'yes' if result.has_header else 'no'}")
    out(f"# columns:   {result.ncolumns}")
    out(f"Column Spec: {result.columnspec}")
    return 0


# ---------------------------------------------------------------------- category
def _register_category(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "category",
        help="add / change / delete / copy categories",
        example='ess category add browse "$PWD/diy_woodworking/*browse_*"',
    )
    sub = p.add_subparsers(dest="action", metavar="{add,change,delete,copy}")
    sub.required = True
    add = add_command(
        sub,
        "add",
        help="define a category: files matching a pattern, dated from their names",
        example='ess category add browse "$PWD/diy_woodworking/*browse_*"\n'
        "ess category add zips '*.zip' --dateregex='[:%y:][:%m:][:%d:].zip'",
        handler=cmd_add,
    )
    add.add_argument("--exclude", nargs="?", help="glob(s) of files to leave out")
    add.add_argument(
        "--dateregex", help="date rule: auto (default), none, or tokens like [:%%Y:][:%%m:][:%%d:]"
    )
    add.add_argument("--dateformat", help="deprecated glob-like date format (*Y-M-D*)")
    add.add_argument("--archive", help="glob(s) of the archive members to read")
    add.add_argument("--compression", help="force a decompressor (default: by content)")
    add.add_argument("--delimiter", help="column delimiter (default: probed)")
    add.add_argument("--columnspec", help='column spec, e.g. "S:date I:user F:price"')
    add.add_argument("--preprocess", help="command the raw data goes through before probing")
    kinds = add.add_mutually_exclusive_group()
    kinds.add_argument("--alls", action="store_true", help="every column a string")
    kinds.add_argument("--allx", action="store_true", help="every column ignored")
    add.add_argument("--overwrite", action="store_true", help="replace an existing category")
    add.add_argument("--label", help=LABEL_HELP)
    add.add_argument("--comment", help="free text shown by ess summary")
    add.add_argument("--noprobe", action="store_true", help="do not sample a file")
    add.add_argument("--usecache", action="store_true", help="reuse the file list; no rescans")
    add.add_argument("--pkey", help="primary key column(s), kept for ess summary")
    add.add_argument("name", help="category name: letters, digits, '_', '-', '.'")
    add.add_argument("pattern", help="glob(s) of the files, or a directory")

    change = add_command(
        sub,
        "change",
        help="change columnspec, dateformat, dateregex, usecache or comment",
        example='ess category change columnspec browse "S:eventDate S:userID I:articleID"\n'
        "ess category change usecache browse --usecache",
        handler=cmd_change,
    )
    change.add_argument(
        "attribute",
        choices=["columnspec", "dateformat", "dateregex", "usecache", "comment"],
        help="what to change",
    )
    change.add_argument("category", help="the category to change")
    change.add_argument("value", nargs="?", help="the new value")
    change.add_argument("--label", help=LABEL_HELP)
    kinds = change.add_mutually_exclusive_group()
    kinds.add_argument("--alls", action="store_true", help="columnspec: every column a string")
    kinds.add_argument("--allx", action="store_true", help="columnspec: every column ignored")
    cache = change.add_mutually_exclusive_group()
    cache.add_argument(
        "--usecache", dest="cache", action="store_const", const=True, help="usecache: on"
    )
    cache.add_argument(
        "--nocache", dest="cache", action="store_const", const=False, help="usecache: off"
    )

    delete = add_command(
        sub,
        "delete",
        help="remove a category (files untouched)",
        example="ess category delete browse",
        handler=cmd_delete,
    )
    delete.add_argument("--label", help=LABEL_HELP)
    delete.add_argument("category", help="the category to remove")
    copy = add_command(
        sub,
        "copy",
        help="copy a category's definition under a new name",
        example="ess category copy browse browse2",
        handler=cmd_copy,
    )
    copy.add_argument("--label", help=LABEL_HELP)
    copy.add_argument("src", help="the category to copy")
    copy.add_argument("dest", help="the new category's name")


def checked_columnspec(text: str | None) -> str | None:
    """The column spec with its blanks normalised, after aq's own parser accepted every item:
    a spec that ``aq_pp -d %cols`` would reject fails now, not at stream time. (Checked here
    because the datastore library does not depend on aq.)"""
    if not text or not text.strip():
        return None
    from ess.aq.colspec import parse_colspec
    from ess.errors import AqError, CategoryError, NotSupportedError

    items = text.split()
    for number, item in enumerate(items, 1):
        if item.lower().startswith("sep:"):  # aq_pp -d separators pass through %cols
            continue
        try:
            parse_colspec(item, what=f"columnspec item {number}")
        except (AqError, NotSupportedError) as exc:
            raise CategoryError(str(exc)) from None
    return " ".join(items)


def cmd_add(args: argparse.Namespace) -> int:
    from ess.datastore.api import add_category
    from ess.datastore.category import Category

    category = Category(
        name=args.name,
        pattern=args.pattern,
        exclude=args.exclude,
        dateregex=args.dateregex,
        dateformat=args.dateformat,
        archive=args.archive,
        compression=args.compression,
        delimiter=args.delimiter,
        columnspec=checked_columnspec(args.columnspec),
        preprocess=args.preprocess,
        comment=args.comment,
        usecache=args.usecache,
        pkey=args.pkey,
    )
    warnings = add_category(
        Workspace.from_env(),
        category,
        label=args.label,
        overwrite=args.overwrite,
        noprobe=args.noprobe,
        alls=args.alls,
        allx=args.allx,
    )
    for warning in warnings:
        note(f"ess category add: {warning}")
    return 0


def cmd_change(args: argparse.Namespace) -> int:
    from ess.datastore.api import change_category

    value = args.value
    if args.attribute == "columnspec" and not (args.alls or args.allx):
        value = checked_columnspec(value)
    warnings = change_category(
        Workspace.from_env(),
        args.attribute,
        args.category,
        value,
        label=args.label,
        alls=args.alls,
        allx=args.allx,
        usecache=args.cache,
    )
    for warning in warnings:
        note(f"ess category change: {warning}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from ess.datastore.api import open_catalog

    open_catalog(Workspace.from_env(), args.label).delete(args.category)
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    from ess.datastore.api import open_catalog

    open_catalog(Workspace.from_env(), args.label).rename_copy(args.src, args.dest)
    return 0


# ---------------------------------------------------------------------- cat / lsa
def cmd_cat(args: argparse.Namespace) -> int:
    from ess.datastore.api import copy_file

    copy_file(
        Workspace.from_env(),
        args.filename,
        sys.stdout.buffer,
        label=args.label,
        decompress=args.decompress,
    )
    return 0


def cmd_lsa(args: argparse.Namespace) -> int:
    from ess.datastore.api import archive_members

    for name in archive_members(
        Workspace.from_env(), args.filename, pattern=args.pattern, label=args.label
    ):
        out(name)
    return 0
