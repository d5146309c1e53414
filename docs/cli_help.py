"""The command-line reference page, docs/cli.md: the ``--help`` of ``recbole-duet``, of its ``export`` and
``serve`` subcommands and of ``recbole-duet-hyper``, as their parsers print it.

    python docs/cli_help.py            # rewrite docs/cli.md
    python docs/cli_help.py --check    # exit 1 if docs/cli.md is not what the parsers print

argparse wraps help to the terminal's width (``COLUMNS``), colours it on a terminal from Python 3.14 and, from
3.13, writes an option with two names differently: the page is rendered at a fixed width, without colour and in
3.10-3.12's layout, so it is the same on every machine. A test (tests/test_deploy_cli.py) renders the page
again and diffs it with the committed one, so a changed help string, default or choice fails until this script is
rerun. Not a docs page: mkdocs.yml excludes it, as it does hooks.py.
"""

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(REPO, "docs", "cli.md")
WIDTH = 98  # characters a help line may take

INTRO = """\
# Command line

<!-- Written by docs/cli_help.py from the parsers themselves: edit a help string or default there and rerun
     `python docs/cli_help.py`; tests/test_deploy_cli.py fails while this page and the parsers differ. -->

Each command's `--help` as it prints it (wrapped at {width} characters), and the defaults of its options, which
`--help` leaves out. `run_recbole_duet.py` and `run_hyper.py` are the same commands as the installed
`recbole-duet` and `recbole-duet-hyper`. The training commands also take any RecBole or DUET key as `--key=value`
([Configuration](configuration.md), [Training](training.md)); `recbole-duet export` and `recbole-duet serve`
take only the options listed ([Deployment](deployment.md)).
"""

# (heading, prog, where the parser comes from, the arguments before --help), in the page's order.
COMMANDS = [
    ("recbole-duet", "recbole-duet", "recbole_duet.cli:build_parser", []),
    ("recbole-duet export", "recbole-duet", "recbole_duet.deploy.cli:build_deploy_parser", ["export"]),
    ("recbole-duet serve", "recbole-duet", "recbole_duet.deploy.cli:build_deploy_parser", ["serve"]),
    ("recbole-duet-hyper", "recbole-duet-hyper", "recbole_duet.cli:build_hyper_parser", []),
]


class PinnedFormatter(argparse.HelpFormatter):
    """argparse's help, ``WIDTH`` columns wide, an option with several names written as Python 3.10-3.12 write it
    (``--model MODEL, -m MODEL``; 3.13 writes ``--model, -m MODEL``), so that every Python renders one page."""

    def __init__(self, prog):
        super().__init__(prog, width=WIDTH)

    def _format_action_invocation(self, action):
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(f"{option} {value}" for option in action.option_strings)


def build(source, prog):
    """The parser ``module:function`` builds, named ``prog`` (the training parsers take theirs from sys.argv)."""
    module, function = source.split(":")
    parser = getattr(__import__(module, fromlist=[function]), function)()
    parser.prog = prog
    return parser


def command_parser(source, prog, arguments):
    """The parser that reads the options of ``prog arguments...``: the subcommand's own for export and serve."""
    parser = build(source, prog)
    for name in arguments:
        (subcommands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        parser = subcommands.choices[name]
    return parser


def help_text(parser):
    """What ``--help`` prints, in a terminal ``WIDTH`` + 2 columns wide (argparse leaves two free), no colour."""
    parser.formatter_class, parser.color = PinnedFormatter, False  # colour: Python 3.14 on a terminal
    return parser.format_help()


def shown(action):
    if action.required:
        return "required"
    if action.default is None:
        return "not set"
    if action.default is False:
        return "off"
    return f"`{action.default}`"


def defaults_table(parser):
    """Each option's default, which ``--help`` leaves out: a markdown table, in the help's order."""
    rows = [
        f"| `{max(action.option_strings, key=len)}` | {shown(action)} |"
        for action in parser._actions
        if action.option_strings and action.default is not argparse.SUPPRESS
    ]
    return "\n".join(["| option | default |", "|---|---|", *rows]) + "\n"


def page():
    """docs/cli.md as the parsers give it."""
    sections = [INTRO.format(width=WIDTH)]
    for heading, prog, source, arguments in COMMANDS:
        parser = command_parser(source, prog, arguments)
        sections.append(
            f"## {heading}\n\n```text\n{help_text(parser).rstrip()}\n```\n\nDefaults:\n\n{defaults_table(parser)}"
        )
    return "\n".join(sections)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write docs/cli.md from the command-line parsers.")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md differs, write nothing")
    args = parser.parse_args(argv)
    text = page()
    current = ""
    if os.path.exists(PAGE):
        with open(PAGE, encoding="utf-8") as file:
            current = file.read()
    if args.check:
        if text != current:
            sys.exit("docs/cli.md is not what the parsers print: run python docs/cli_help.py")
        return
    with open(PAGE, "w", encoding="utf-8") as file:
        file.write(text)
    print(f"wrote {os.path.relpath(PAGE)}")


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    main()
