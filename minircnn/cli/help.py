"""``--help`` pages that show every default, and the config each option defaults from.

Many options default to ``None`` so that ``train --resume`` can tell "given" from "not
given"; their real default is a field of TrainConfig / PretrainConfig / FinetuneConfig.
``config_defaults`` tags those options with the field, and ``HelpFormatter`` looks the
value up only when a help page is printed (importing the configs takes seconds, and
``minircnn --help`` must not).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter, also stating each option's range (from its rule in
    minircnn/utils/settings.py), with a config field's default where the option's own
    is None, and lists written as typed on the command line (``1,2``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if not action.option_strings:
            return help_text                       # a positional: nothing to add
        notes = []
        rule = getattr(action.type, "rule", None)
        if rule is not None and not any(w in help_text for w in _RANGE_WORDS):
            notes.append(rule.text)
        default = _default_text(action)
        if default is not None and "default" not in help_text:
            notes.append(f"default: {default}")
        if not notes:
            return help_text
        if help_text.endswith(")"):                # "... (>= 1)" -> "... (>= 1; default: 9)"
            return f"{help_text[:-1]}; {'; '.join(notes)})"
        return f"{help_text} ({'; '.join(notes)})"


# Words by which a help text already states its option's range.
_RANGE_WORDS = (">=", "> 0", "..", "in [", "in (", "0: none")


def _default_text(action: argparse.Action) -> str | None:
    """The option's default as typed on a command line; None for flags and no default."""
    value = action.default
    if value is None and hasattr(action, "config_field"):
        value = _config_default(*action.config_field)
    if value is None or value is argparse.SUPPRESS or isinstance(value, bool):
        return None
    if isinstance(value, tuple):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return "''" if value == "" else str(value).replace("%", "%%")


def _config_default(module: str, cls: str, field: str):
    """The default of ``field`` in the dataclass ``module.cls`` (None if it has none)."""
    config = getattr(importlib.import_module(module), cls)
    for f in dataclasses.fields(config):
        if f.name == field and f.default is not dataclasses.MISSING:
            return f.default
    return None


def config_defaults(parser: argparse.ArgumentParser, module: str, cls: str,
                    fields: dict[str, str] | None = None) -> None:
    """Tag ``parser``'s options whose default is None with the field of ``module.cls``
    of the same name (or the name ``fields`` maps their dest to); nothing is imported."""
    for action in parser._actions:            # argparse keeps no public list of options
        if action.default is None and action.option_strings:
            action.config_field = (module, cls, (fields or {}).get(action.dest, action.dest))


def describe_commands(parser: argparse.ArgumentParser) -> None:
    """Give every sub-command page the formatter and a description line (its one-line
    help from ``minircnn --help``, unless it has its own)."""
    parser.formatter_class = HelpFormatter
    for sub in parser._subparsers._group_actions:
        helps = {a.dest: a.help for a in sub._choices_actions}
        for name, command in sub.choices.items():
            command.formatter_class = HelpFormatter
            if not command.description and helps.get(name):
                text = helps[name]
                command.description = text[0].upper() + text[1:] + "."
