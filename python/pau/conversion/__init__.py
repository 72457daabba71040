"""The parts of :func:`pau.convert`, one concern per module.

* :mod:`~pau.conversion.matching`: the preset each activation type starts from.
* :mod:`~pau.conversion.channels`: the channel count and dim each activation sees.
* :mod:`~pau.conversion.functionals`: functional activations in fx-traceable models.
* :mod:`~pau.conversion.report`: the :class:`ConversionSummary` it returns.
* :mod:`~pau.conversion.start_error`: how close the converted model starts to the
  original on an example input (filled into the summary).

Building each new unit is the unit's own :meth:`pau.nn.Unit.for_conversion`.
"""
