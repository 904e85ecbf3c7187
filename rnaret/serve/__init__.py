"""``rnaret serve``: a local web page and JSON API for structure, coding potential and embeddings.

``create_app(structure_checkpoint=..., coding_checkpoint=..., embed_checkpoint=..., limits=Limits())``
returns the FastAPI application (``rnaret.serve.app``); ``rnaret.serve.jobs`` runs the work in
worker processes (``rnaret.serve.worker``); ``rnaret.serve.inputs`` checks what users send.
FastAPI and uvicorn are the ``serve`` extra: this package is imported only when serving.
"""
from rnaret.serve.config import Limits, ServeConfig


def create_app(*args, **kwargs):
    """The FastAPI application; see ``rnaret.serve.app.create_app``."""
    from rnaret.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app", "Limits", "ServeConfig"]
