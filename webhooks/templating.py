"""The dashboard's one Jinja2 environment: autoescaped templates from webhooks/templates, our filters, undefined
names as errors. Built once per process; the pages render through aiohttp-jinja2 with it, and the live hub renders
the same fragment templates with it outside any request."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from webhooks.formatting import FILTERS

TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,  # templates ship with the code: never stat them per render
    )
    env.filters.update(FILTERS)
    return env
