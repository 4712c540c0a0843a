"""``unseg serve``: protect images in the browser.

``workspace`` holds what the server does (uploads, masks, protection through the library's
pipeline, result views, zip) under one temporary folder; ``protectors`` loads the generator
choices once; ``app`` is the thin Starlette web layer; ``server`` binds and runs it (uvicorn);
``static/`` is the page. Starlette and uvicorn are imported only by ``app`` and inside
``server.run_server``, so the rest works without the ``serve`` extra.
"""
