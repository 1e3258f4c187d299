"""Learning-rate schedules of ``mlx.optimizers``: each returns ``schedule(step) -> value``."""

import math

import oxmx.core as mx

__all__ = ["exponential_decay", "step_decay", "cosine_decay", "join_schedules", "linear_schedule"]


def exponential_decay(init, decay_rate):
    """``init * decay_rate ** step``."""

    def schedule(step):
        return init * decay_rate**step

    return schedule


def step_decay(init, decay_rate, step_size):
    """``init * decay_rate ** (step // step_size)``."""

    def schedule(step):
        return init * (decay_rate ** (step // step_size))

    return schedule


def cosine_decay(init, decay_steps, end=0.0):
    """Half a cosine from ``init`` down to ``end`` over ``decay_steps`` steps, then ``end``."""

    def schedule(step):
        s = mx.minimum(step, decay_steps)
        decay = 0.5 * (1.0 + mx.cos((math.pi / decay_steps) * s))
        return end + decay * (init - end)

    return schedule


def join_schedules(schedules, boundaries):
    """``schedules[i+1]`` (with its step counted from ``boundaries[i]``) from step
    ``boundaries[i]`` on, ``schedules[0]`` before the first boundary."""
    if len(schedules) == 0:
        raise ValueError("Must provide at least 1 schedule to join.")
    if len(schedules) != len(boundaries) + 1:
        raise ValueError("Received {} boundaries but expected {}.".format(len(boundaries), len(schedules) - 1))

    def schedule(step):
        out = schedules[0](step)
        for boundary, s in zip(boundaries, schedules[1:]):
            out = mx.where(step < boundary, out, s(step - boundary))
        return out

    return schedule


def linear_schedule(init, end, steps):
    """From ``init`` to ``end`` linearly over ``steps`` steps, then ``end``."""
    if steps < 1:
        raise ValueError("steps must be greater than 0, but got {}.".format(steps))

    def schedule(step):
        step = mx.minimum(step, steps)
        return step * ((end - init) / steps) + init

    return schedule
