"""``unseg serve``: protect images in the browser.

``workspace`` holds what the server does (uploads, masks, protection through the library's
pipeline, result views, zip) under one temporary folder; ``protectors`` loads the generator
choices once; ``app`` is the thin Starlette web layer; ``static/`` the page. Starlette is
imported only by ``app``, so the rest works without the ``serve`` extra.
"""
