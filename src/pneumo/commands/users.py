"""``pneumo users``: accounts and API tokens in the history database (the one ``pneumo serve --db`` uses)."""

from __future__ import annotations

import argparse
import getpass
import sys

from pneumo.service.settings import default_data_dir

CLI_ACTOR = "cli"  # the audit's name for changes made with this command (it runs as whoever holds the database)
DEFAULT_TOKEN_DAYS = 90


def add_db_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, metavar="URL",
                   help="history database: sqlite:///path/file.sqlite3 or postgresql://user:pass@host/db "
                        "(default: the SQLite file in --data-dir, as pneumo serve)")
    p.add_argument("--data-dir", default=str(default_data_dir()), help="where the default SQLite history lives")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("users", help="accounts, roles and API tokens of the service",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="users_command", required=True)
    add = sub.add_parser("add", help="add an account; its password is read from standard input",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=("admin", "clinician", "integration", "viewer"))
    add.add_argument("--no-password", action="store_true",
                     help="no page sign-in: the account uses API tokens only (an integration)")
    listing = sub.add_parser("list", help="accounts, roles, state and tokens (never a secret)")
    disable = sub.add_parser("disable", help="disable an account: its sessions and tokens stop at once")
    disable.add_argument("name")
    token = sub.add_parser("token", help="issue an API token; printed once, on the last line",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    token.add_argument("name")
    token.add_argument("--expires-days", type=int, default=DEFAULT_TOKEN_DAYS, metavar="N", help="lifetime in days")
    revoke = sub.add_parser("revoke-token", help="revoke one token (--id) or all tokens of an account")
    revoke.add_argument("name")
    revoke.add_argument("--id", type=int, default=None, dest="token_id", help="the token id `users list` shows")
    for command in (add, listing, disable, token, revoke):
        add_db_flags(command)
    p.set_defaults(func=run)


def open_stores(args: argparse.Namespace):
    """The history database named by --db/--data-dir (migrated), with its account store."""
    from pneumo.service.accounts import AccountStore
    from pneumo.service.history import open_history
    from pneumo.service.settings import ServiceSettings

    settings = ServiceSettings(db_url=args.db or "", data_dir=args.data_dir, api_key=None)
    history = open_history(settings.database_url)
    return history, AccountStore(history.engine, history.write_lock)


def read_password(name: str) -> str:
    """The password from standard input: typed twice at a terminal (not echoed), else its first line."""
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise ValueError("no password on standard input (give it on the first line, or use --no-password)")
    return line


def run(args: argparse.Namespace) -> int:
    history, accounts = open_stores(args)
    try:
        return ACTIONS[args.users_command](args, accounts)
    finally:
        history.close()


def _add(args: argparse.Namespace, accounts) -> int:
    password = None if args.no_password else read_password(args.name)
    account = accounts.add(args.name, args.role, password, by=CLI_ACTOR)
    print(f"added {account.name} ({account.role}{', tokens only' if password is None else ''})")
    return 0


def _list(args: argparse.Namespace, accounts) -> int:
    for account in accounts.list():
        tokens = accounts.tokens(account.name)
        live = [t for t in tokens if t["revoked"] is None]
        state = "disabled" if account.disabled else "enabled"
        ids = ", ".join(f"{t['id']} (expires {t['expires']})" for t in live) or "none"
        print(f"{account.name}\t{account.role}\t{state}\tsince {account.created}\ttokens: {ids}")
    return 0


def _disable(args: argparse.Namespace, accounts) -> int:
    accounts.disable(args.name, by=CLI_ACTOR)
    print(f"disabled {args.name}: its sign-ins, sessions and tokens no longer work")
    return 0


def _token(args: argparse.Namespace, accounts) -> int:
    token_id, token, expires = accounts.issue_token(args.name, days=args.expires_days, by=CLI_ACTOR)
    print(f"token {token_id} for {args.name}, expires {expires}; it is shown only now, send it as "
          "'Authorization: Bearer TOKEN':")
    print(token)
    return 0


def _revoke(args: argparse.Namespace, accounts) -> int:
    count = accounts.revoke_tokens(args.name, token_id=args.token_id, by=CLI_ACTOR)
    print(f"revoked {count} token{'s' if count != 1 else ''} of {args.name}")
    return 0


ACTIONS = {"add": _add, "list": _list, "disable": _disable, "token": _token, "revoke-token": _revoke}
