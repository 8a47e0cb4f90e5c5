"""minirt build: images from a Dockerfile.

Lecture idea: "1. Create a Dockerfile to define your image. 2. Run a docker
build to turn your configuration into an image."  ``dockerfile.py`` reads the
Dockerfile's syntax, ``words.py`` expands the values in it,
``ignore.py`` keeps what .dockerignore names out of the build context,
``stages.py`` plans which stages to build.
"""
