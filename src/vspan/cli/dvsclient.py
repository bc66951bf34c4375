"""What every command on a distributed switch shares: its command group, the ``--etcd`` /
``--dvs`` options, the store and switch they name, and one way of reporting errors.

``vspan dvs``, ``vspan vm`` and ``vspan trace --vm`` use these, so a command reaches the
store, picks the switch and fails the same way whichever group it is in.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vspan.cli.client import Endpoint
    from vspan.control.dvs.admin import DvsAdmin
    from vspan.control.store.base import Store

DEFAULT_ETCD = os.environ.get("VSPAN_ETCD", "http://127.0.0.1:2379")

Command = Callable[[argparse.Namespace], int]


def command_group(sub: Any, name: str, helptext: str) -> Any:
    """Add command group ``name`` (``vspan NAME COMMAND``); return its sub-parsers. The
    group alone prints its help and exits 2."""
    top: argparse.ArgumentParser = sub.add_parser(name, help=helptext)
    commands = top.add_subparsers(dest=f"{name}_command", metavar="COMMAND")

    def usage(_args: argparse.Namespace) -> int:
        top.print_help()
        return 2

    top.set_defaults(func=usage)
    return commands


def add_store_options(p: argparse.ArgumentParser, name: bool = True) -> None:
    """``--etcd`` (and, with ``name``, ``--dvs``: which distributed switch)."""
    p.add_argument("--etcd", default=DEFAULT_ETCD,
                   help="etcd client URL (default: %(default)s; env VSPAN_ETCD)")
    if name:
        p.add_argument("--dvs", default=os.environ.get("VSPAN_DVS"),
                       help="distributed switch (default: env VSPAN_DVS, or the only one)")


def open_store(url: str) -> Store:
    """The etcd store at ``url``."""
    from vspan.control.store.etcd import EtcdStore

    return EtcdStore(url)


def switch_name(args: argparse.Namespace, store: Store) -> str:
    """``--dvs``, or the only distributed switch in the store (DvsError otherwise)."""
    from vspan.control.dvs.admin import DvsError, list_switches

    if args.dvs:
        return str(args.dvs)
    names = list_switches(store)
    if len(names) == 1:
        return names[0]
    if not names:
        raise DvsError("there is no distributed switch in the store (vspan dvs create NAME)")
    raise DvsError(f"several distributed switches ({', '.join(names)}): choose one with --dvs")


def open_switch(args: argparse.Namespace) -> DvsAdmin:
    """The admin of the switch ``--dvs`` names in the store ``--etcd`` names (its
    ``store``)."""
    from vspan.control.dvs.admin import DvsAdmin

    store = open_store(args.etcd)
    return DvsAdmin(store, switch_name(args, store))


def fail(msg: str) -> int:
    """Say ``msg`` on stderr; exit status 1."""
    sys.stderr.write(f"vspan: {msg}\n")
    return 1


def guarded(fn: Command) -> Command:
    """Turn store and validation errors into one clear message and exit status 1."""

    def wrapped(args: argparse.Namespace) -> int:
        from vspan.config.load import ConfigError
        from vspan.control.dvs.admin import DvsError
        from vspan.control.dvs.document import SchemaError, StoredDataError
        from vspan.control.store.base import StoreError, StoreUnavailable

        try:
            return fn(args)
        except StoreUnavailable as err:
            return fail(f"{err}\nnothing was changed: the distributed switch cannot be "
                        "read or changed while etcd is unreachable (hosts keep forwarding "
                        "with their last configuration)")
        except ConfigError as err:
            for line in err.errors:
                sys.stderr.write(f"{err.source}: {line}\n" if err.source else f"{line}\n")
            return 1
        except (DvsError, SchemaError, StoredDataError, StoreError, ValueError) as err:
            return fail(str(err))

    return wrapped


def agent_endpoints(items: list[str], token_file: str | None,
                    cacert: str | None) -> dict[str, Endpoint]:
    """``--agent HOST=SOCKET|URL`` options as endpoints by host (ValueError when malformed)."""
    from vspan.cli.client import Endpoint

    out: dict[str, Endpoint] = {}
    for item in items:
        host, sep, where = item.partition("=")
        if not sep or not host or not where:
            raise ValueError(f"--agent {item!r}: give HOST=SOCKET or HOST=URL")
        out[host] = (Endpoint(url=where, token_file=token_file, cacert=cacert)
                     if where.startswith(("http://", "https://")) else Endpoint(where))
    return out
