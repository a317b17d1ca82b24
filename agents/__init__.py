"""The use cases: Faust-free processors over the models in ``models/``.

Each use case is a :class:`~agents.core.contract.Processor` (``agents/<use case>.py``),
listed by name in :data:`agents.registry.PROCESSORS`. The worker runs each through
:mod:`stream_app.runtime.runner`; ``spcwatch replay`` runs the same processor over a
file. ``agents/core/`` holds what the use cases share: the processor contract, the
typed events and their decoders, the ``Alert`` and its id recipe, the settings loader.
"""
