"""eco-value: audited gross ecosystem product (GEP) and forest carbon-sink accounting.

The package turns rasters into numbers that money can move on. Reading and writing live at the
edges (:mod:`eco_value.inputs`, :mod:`eco_value.outputs`, :mod:`eco_value.store`); the science in
:mod:`eco_value.carbon` and :mod:`eco_value.services` is pure functions over ``xarray.DataArray``.
"""

__version__ = "0.1.0"
