"""Shared by the compose tests: the specification's schema, found where the
project keeps reference data (../shared/conformance, never copied here)."""

import os

import pytest


@pytest.fixture(autouse=True)
def compose_schema(conformance, monkeypatch):
    path = os.path.join(conformance, "compose", "compose-spec.json")
    monkeypatch.setenv("MINIRT_COMPOSE_SCHEMA", path)
    return path
