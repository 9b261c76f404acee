"""The example services: ``make(**options) -> Node`` each."""

from . import chat, echo

SERVICES = {"echo": echo.make, "chat": chat.make}
