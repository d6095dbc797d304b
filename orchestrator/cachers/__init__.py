"""Cachers turn a stage's return value into stored bytes and back.

See :class:`~orchestrator.cachers.base.Cacher` for the contract and
:func:`~orchestrator.cachers.registry.register_cacher` to add one.
"""

from .base import Cacher, streams
from .registry import choose_cacher, get_cacher, register_cacher, registered_cachers

__all__ = ["Cacher", "choose_cacher", "get_cacher", "register_cacher", "registered_cachers", "streams"]
