"""minirt compose: a system of several containers, described in one YAML file.

Lecture idea: "Alternately, you can use a yaml file to define multiple images
that work together to create a system".  A compose file names services (an
image, or a Dockerfile to build one, and how to run it), the networks they meet
on and the volumes that keep their data; ``minirt compose up`` makes the
containers, in the order their dependencies ask, and ``down`` takes them away.
It is a client of ``minirt.api``, as the ``minirt`` command is: whatever it
does, a Python program can do through the same doors.

Read in this order, the order a file takes through them:

    yamlfile.py     the YAML as docker compose reads it (YAML 1.2's core schema)
    interpolate.py  ${VAR}, ${VAR:-default}, ${VAR:?error}, $$; .env files
    schema.py       the Compose Specification's JSON schema, checked (a draft-07 subset)
    model.py        the files -> one Project: several -f merged, extends, profiles,
                    each service's short forms read into one shape
    plan.py         which containers a project wants: names, labels, config hash, order
    project.py      the verbs: up, down, ps, logs, build, pull, push, exec, run, ...
"""
