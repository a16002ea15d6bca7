"""The telepathology service: ``scopectl serve``, its HTTP API, enhancement queue, workers and viewer.

A field clinic uploads phone-microscope captures (from a laptop or straight from the phone's browser); a
worker enhances them with the model an admin chose for the sample type; a remote expert compares each capture
with its enhanced version in synchronised deep zoom and writes a report.  See ``docs/server.md``.

Modules::

    settings    ServeSettings (validated)          db          tables, engines, migrations (Alembic)
    accounts    users, clinics, sessions, audit    security    argon2, tokens, CSRF
    multipart   streaming uploads with limits      uploads     checks by content, storage, jobs
    storage     files under <root>/serve/          tiles       deep-zoom tile packs
    queue       persisted jobs under leases        worker      enhancement workers
    models      which models may serve             export      OME-TIFF/TIFF/PNG downloads
    api, pages  the HTTP API and the browser pages app, server  the ASGI app and uvicorn
    client      the API client of `scopectl upload`

The service sits beside the CLI at the top of the data flow (the CLI starts it): it may import learning,
evaluation, the store and the low modules (imageio, writers, config, errors), never hardware, acquisition,
the twin or the CLI.  See ``docs/architecture.md``.
"""
