"""The floors: minimal servers that do only the unavoidable work of each scenario, measured in the same run as
chatkeep so every figure has a baseline from the same machine at the same moment.

A floor is a Starlette route over the raw driver (asyncpg, or the standard library's ``sqlite3``) with orjson,
served by the same uvicorn as chatkeep: no ORM, no validation, no dependency injection, no layers. It reads and
writes **chatkeep's own tables** with hand-written SQL and answers with the same JSON and the same SSE frames
(the scenarios check that, byte for byte where it matters), so the difference between the two is what chatkeep
adds on top of the work itself.

* :mod:`benchmarks.floors.app`: loading a thread, appending messages, listing threads, a chat turn.
* :mod:`benchmarks.floors.sse`: the streaming floor, a route that sends the demo model's frames on its schedule.
"""
