"""MkDocs hook: the docstrings cross-reference with Sphinx roles (:class:`X`, :func:`f`), which the API reference
renders as literal text before the code; drop the role, keep the code."""

import re

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>~?")


def on_page_content(html, **kwargs):
    return ROLE.sub("<code>", html)
