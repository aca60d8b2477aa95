"""The command line's commands, one module per job; ``codirector.cli`` registers them on the Typer app.

    common       option types, the invocation's Studio, JSON and console output, progress bars
    queries      init, stories, log, memory, backends, verify, reindex
    views        history, diff, audit (projections of the log)
    runs         run, resume, export, branch, replay
    director     direct, eval, bench, demo
    serve        serve: the studio in the browser (FastAPI, uvicorn, Jinja2 load only when it runs)
    gc           gc: list and remove blobs no event names

Every command parses, calls one ``Studio`` method, and renders the typed result it gets back
(attributes, never JSON keys); ``--json`` prints that result's ``to_json()``. Modules import only
typer at load time, so ``codirector --help`` and query commands start fast.
"""
