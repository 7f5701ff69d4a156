"""The database's read-only doors: an OPTIMADE API for programs and HTML pages for people,
one FastAPI app served by uvicorn (``atlas2d serve``)."""
