"""The report's Jinja2 environment: templates under ``templates/`` (package data), autoescaped.

Autoescape is on for every template, so any value given to one is text (``<script>`` in a prompt shows as
``<script>``); only :class:`markupsafe.Markup` goes in as markup, and only the plots, rendered by these same
templates, are passed that way. ``StrictUndefined``: a misspelt name in a template fails the report instead of
silently leaving a blank.
"""

from __future__ import annotations

from typing import Any

import jinja2
from markupsafe import Markup

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("framefarm.report", "templates"), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                          undefined=jinja2.StrictUndefined)


def render(template: str, **context: Any) -> Markup:
    """``templates/<template>`` rendered with ``context``, as markup ready to go into another template."""
    return Markup(_ENV.get_template(template).render(**context))
