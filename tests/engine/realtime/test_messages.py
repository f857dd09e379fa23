"""What moves between the engine's threads is frozen (engine/realtime/messages.py)."""

from __future__ import annotations

import dataclasses

import pytest

from engine.realtime import messages


@pytest.mark.parametrize("name", [n for n in messages.__all__ if n not in ("Outgoing", "Write")])
def test_every_message_is_a_frozen_dataclass(name):
    cls = getattr(messages, name)
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen


def test_a_message_cannot_be_changed_after_it_is_queued():
    item = messages.FinishPullback("pb", "complete", None, (0.1, 0.1), {"counts": {}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.state = "incomplete"
