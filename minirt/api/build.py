"""Build an image from a Dockerfile (``minirt build``).

Lecture idea: "create a Dockerfile to define your image, run a docker build to
turn your configuration into an image": each instruction is a step whose
result is a layer, cached so that a rebuild redoes only what changed.  The
builder is ``minirt/build/``; this is its door.
"""

import os

from minirt.errors import SpecError


def build(root, context, file=None, stdin=None, *, tags=(), build_args=None, target=None, no_cache=False,
          network=None, progress=None, out=None, epoch=None):
    """Build the Dockerfile ``file`` (default ``context``/Dockerfile; ``-``:
    from ``stdin``) in ``context`` (a directory, or ``-``: a tar on ``stdin``);
    tag it ``tags``; return the image id.  ``progress``: None (quiet),
    ``"plain"`` (BuildKit's plain lines) or ``"tty"`` (redrawn in place), on
    the text file ``out``.  ``epoch``: SOURCE_DATE_EPOCH, for images whose
    bytes do not depend on when they were built."""
    from minirt.build import progress as shows
    from minirt.build.builder import Builder
    from minirt.build.context import Input
    from minirt.runtime.catalog import check_name

    names = [check_name(t) for t in tags]
    if progress not in (None, "plain", "tty"):
        raise SpecError(f"invalid progress {progress!r} (want plain or tty)")
    shown = None
    if progress == "plain":
        shown = shows.Plain(out)
    elif progress == "tty":
        shown = shows.Terminal(out, os.get_terminal_size(out.fileno()).columns)
    with Input(context, file, stdin) as given:
        builder = Builder(root, given.context, given.text, name=given.name, build_args=build_args or {},
                          target=target, no_cache=no_cache, network=network, progress=shown, epoch=epoch)
        try:
            return builder.build(names)
        finally:
            if shown:
                shown.close()
