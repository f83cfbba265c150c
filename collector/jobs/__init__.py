"""Exports: long answers as jobs (SPEC "Exports").

A job is a row of ours (``model.Export``: query, holder, state, progress, attempts, file, checksum,
expiry) and a task on Django's task API (``tasks.run_export``) that carries only the row's id.
The task runs the same fan-out and merge as a streamed ``/data.pcap`` into a temporary file,
checked and renamed when whole (``runner``); ``sweep`` gives a dead worker's job another attempt
or fails it, and deletes expired files; ``views`` is the HTTP API.
"""
