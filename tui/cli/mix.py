"""`--with NAME[:TAG]` on `attnlab chat`, `attnlab eval` and `attnlab sample`: more saves that answer with the first."""

from core.checkpoint import SaveError
from core.mixture import Mixture, MixtureError, load_members
from tui.cli.common import UserError

WITH_HELP = ("another save that answers together with this one (NAME, or NAME:TAG for a tag other than --tag's): "
             "each next character's probability is the mean of the saves'; repeat for more")


def add_with(parser):
    parser.add_argument("--with", dest="mix", action="append", default=[], metavar="NAME[:TAG]", help=WITH_HELP)


def parse_with(spec, default_tag):
    """(name, tag) of a --with value; the tag defaults to the first save's."""
    name, sep, tag = spec.rpartition(":") if ":" in spec else (spec, "", default_tag)
    if not name or not tag:
        raise UserError(f"--with {spec!r}: give a save's name, or NAME:TAG (e.g. run1:best)")
    return name, tag


def mixed(model, tok, cfg, label, specs, default_tag):
    """(model, labels): `model` alone without --with, else a Mixture of it and each --with save."""
    if not specs:
        return model, [label]
    try:
        others, labels = load_members([parse_with(spec, default_tag) for spec in specs], (tok, cfg, label), names=specs)
    except SaveError as e:
        raise UserError(f"--with {e}") from None
    except MixtureError as e:
        raise UserError(f"--with: {e}") from None
    return Mixture([model, *others]), [label, *labels]
