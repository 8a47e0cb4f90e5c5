"""A build's plan: stages, global ARGs and --build-arg, flags, --target and the
stages it needs; every bad Dockerfile named by its line."""

import pytest

from minirt.build.dockerfile import parse
from minirt.build.stages import arg_pairs, flags, plan
from minirt.errors import BuildError

MULTI = """\
ARG BASE=busybox
ARG TAG=${BASE}-latest
FROM $BASE AS deps
RUN fetch
FROM deps AS build
COPY --from=deps /a /a
RUN make
FROM busybox AS test
COPY --from=build /app /app
FROM busybox AS docs
FROM ${BASE}:1 AS final
COPY --from=1 /app /app
COPY --from=other-image:2 /x /x
"""


def names(stages):
    return [s.name for s in stages]


def test_the_target_needs_only_its_stages():
    p = plan(parse(MULTI))
    assert p.target.name == "final" and p.target.base == "busybox:1"
    assert names(p.needed()) == ["deps", "build", "final"]
    assert names(plan(parse(MULTI), target="TEST").needed()) == ["deps", "build", "test"]
    assert names(plan(parse(MULTI), target="docs").needed()) == ["docs"]
    assert p.global_args["TAG"] == "busybox-latest"


def test_build_args_override_defaults_literally_and_unused_ones_are_reported():
    p = plan(parse(MULTI), {"BASE": "alpine", "TAG": "$x", "NOPE": "1", "HTTP_PROXY": "h"})
    assert p.stages[0].base == "alpine" and p.global_args["TAG"] == "$x"
    assert p.unused_build_args == ["NOPE"]


def test_platform_args_are_global():
    p = plan(parse("FROM img-$TARGETARCH AS a\n"), platform=("linux", "arm", "v7"))
    assert p.stages[0].base == "img-arm" and p.global_args["TARGETPLATFORM"] == "linux/arm/v7"


def test_flags_and_arg_pairs():
    ins = parse("FROM a\nCOPY --from=x --chown=1:2 --link a b\n").instructions[1]
    assert flags(ins, "") == {"from": "x", "chown": "1:2", "link": True}
    run = parse("FROM a\nRUN --mount=type=cache,target=/c --mount=from=b --network=none x\n").instructions[1]
    assert flags(run, "") == {"mount": ["type=cache,target=/c", "from=b"], "network": "none"}
    assert arg_pairs(parse('FROM a\nARG a b=2 c="x y"\n').instructions[1], "") == [
        ("a", None), ("b", "2"), ("c", '"x y"')]


@pytest.mark.parametrize("text, message", [
    ("RUN x\nFROM a\n", "Dockerfile:1: RUN before the first FROM"),
    ("ARG X\n", "Dockerfile: no FROM instruction"),
    ("FROM a\nBOGUS x\n", "Dockerfile:2: unknown instruction: BOGUS"),
    ("FROM a\nCOPY --user=me a b\n", "Dockerfile:2: unknown flag: --user (for COPY)"),
    ("FROM a\nCOPY --from a b\n", "Dockerfile:2: missing a value on flag: --from"),
    ("FROM a\nCOPY --from=a --from=b a b\n", "Dockerfile:2: duplicate flag specified: --from"),
    ("FROM a\nCOPY --link=maybe a b\n", "Dockerfile:2: --link takes true or false"),
    ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
    ("FROM a AS 1x\n", "Dockerfile:1: invalid name for build stage: '1x'"),
    ("FROM a AS x\nFROM b AS X\n", "Dockerfile:2: duplicate stage name 'x'"),
    ("FROM $NONE\n", "Dockerfile:1: FROM $NONE: the image name is empty"),
    ("FROM a AS x\nCOPY --from=y /a /a\nFROM b AS y\n", "Dockerfile:2: --from=y: a stage can only use an earlier stage"),
    ("FROM a\nCOPY --from=0 /a /a\n", "Dockerfile:2: --from=0: a stage can only use an earlier stage"),
    ("FROM a\nARG =1\n", "Dockerfile:2: ARG names can not be blank"),
])
def test_bad_plans_name_the_line(text, message):
    with pytest.raises(BuildError) as e:
        plan(parse(text))
    assert str(e.value).startswith(message)


def test_an_unknown_target_is_one_line():
    with pytest.raises(BuildError, match="target stage 'nope' could not be found"):
        plan(parse(MULTI), target="nope")
