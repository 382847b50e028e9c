"""GEP services: one module per service, each a pure function of aligned DataArrays and a rule set.

Every service module declares ``SPEC`` (its layers, parameters, units and method source) and a
``compute(ctx) -> ServiceResult`` that returns the physical quantity and its value in CNY *per
pixel*, lazily. The registry :data:`SERVICES` keeps the order used in accounts and reports.
"""

from __future__ import annotations

from . import (air_purification, carbon_sequestration, climate_regulation, flood_regulation,
               oxygen_release, provisioning, recreation, soil_conservation, water_conservation,
               water_purification)
from .base import ServiceContext, ServiceResult, ServiceSpec

SERVICES = {
    m.SPEC.key: m
    for m in (provisioning, water_conservation, soil_conservation, flood_regulation, air_purification,
              water_purification, carbon_sequestration, oxygen_release, climate_regulation, recreation)
}

__all__ = ["SERVICES", "ServiceContext", "ServiceResult", "ServiceSpec", "compute_services"]


def compute_services(ctx: ServiceContext) -> dict[str, ServiceResult]:
    """Every service the rule set lists, in registry order (lazy)."""
    wanted = ctx.rules.meta.services or list(SERVICES)
    return {k: m.compute(ctx) for k, m in SERVICES.items() if k in wanted}
