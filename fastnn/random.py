"""``keras.random``: seeded random arrays (``fastnn.ops.random``); ``fastnn.utils.set_random_seed``
resets the process-wide generator they draw from (``fastnn.seeding``)."""

from fastnn.ops.random import *  # noqa: F403
