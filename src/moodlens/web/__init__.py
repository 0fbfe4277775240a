"""The MoodLens web app (needs the ``web`` extra: FastAPI, uvicorn, SQLAlchemy, psycopg).

    from moodlens.web import serve
    serve(port=8000)                       # teacher pages, student join page, JSON API

Modules: :mod:`~moodlens.web.server` (``create_app``, which assembles middleware and routers, and
``serve``), :mod:`~moodlens.web.state` (the state the routes share), :mod:`~moodlens.web.deps`
(the state and the access checks as FastAPI dependencies); the routers :mod:`~moodlens.web.site`
(pages, login, health), :mod:`~moodlens.web.sessions`, :mod:`~moodlens.web.sockets`,
:mod:`~moodlens.web.upload_routes`, :mod:`~moodlens.web.privacy`, :mod:`~moodlens.web.browser`;
:mod:`~moodlens.web.live` (live sessions, newest-frame scheduling, per-second recording),
:mod:`~moodlens.web.dashboard` (stored sessions for review), :mod:`~moodlens.web.uploads`
(limits, image checks, video jobs), :mod:`~moodlens.web.auth` (tokens); pages in ``pages/``,
scripts and styles in ``static/``.
"""

from __future__ import annotations

__all__ = ["create_app", "serve"]


def __getattr__(name: str):
    if name in __all__:
        try:
            from moodlens.web import server
        except ImportError as exc:
            raise ImportError(f"the web app needs its extra: pip install 'moodlens[web]' ({exc})") from exc
        return getattr(server, name)
    raise AttributeError(f"module 'moodlens.web' has no attribute {name!r}")
