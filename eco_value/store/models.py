"""SQLModel tables of the valuation store (SQLite embedded, PostgreSQL in production).

Geometries are kept as WKB (bytes) so both databases work without spatial extensions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class RuleSetRow(SQLModel, table=True):
    __tablename__ = "rule_sets"
    hash: str = Field(primary_key=True, max_length=64)
    name: str = Field(index=True)
    title: str = ""
    content_json: str = Field(sa_column=Column(Text, nullable=False))


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    id: str = Field(primary_key=True, max_length=36)
    fingerprint: str = Field(index=True, max_length=64)
    status: str = Field(index=True)  # running | complete | failed
    region: str = ""
    adcode: str = ""
    period_start: int = 0
    period_end: int = 0
    started: datetime
    finished: datetime | None = None
    code_version: str = ""
    ruleset_hash: str = Field(default="", max_length=64)
    ruleset_name: str = ""
    catalog_path: str = ""
    dask_config: str = Field(default="{}", sa_column=Column(Text))
    options_json: str = Field(default="{}", sa_column=Column(Text))
    summary_json: str = Field(default="{}", sa_column=Column(Text))
    error: str = Field(default="", sa_column=Column(Text))
    pid: int = 0
    host: str = ""


class InputFile(SQLModel, table=True):
    __tablename__ = "input_files"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    layer: str
    path: str
    sha256: str = Field(max_length=64)   # empty when hash_kind is "etag+size"
    hash_kind: str = "sha256"             # "sha256" | "etag+size" (a large remote input; revision 0007_remote_hash_kind)
    etag: str = ""                        # the server's ETag of a remote input
    size_bytes: int
    product: str = ""
    year: int | None = None


class Zone(SQLModel, table=True):
    __tablename__ = "zones"
    __table_args__ = (UniqueConstraint("run_id", "kind", "zone_id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    kind: str  # county | township | parcel
    zone_id: str = Field(index=True)
    parent_id: str = ""
    name: str = ""
    holder_id: str = ""
    holder_type: str = ""
    other_programme: str = ""
    # tenure (林权) of a parcel from the catalog's tenure records (revision 0008_parcel_tenure; "" without)
    tenure_certificate: str = ""          # BDCQZH, ";"-joined when the parcel's 小班 hold several
    tenure_holder: str = ""               # SLLMSYQR, ";"-joined
    use_right_start: str = ""             # ISO date: the latest start of its certificates
    use_right_end: str = ""               # ISO date: the earliest end of its certificates
    tenure_area_mu: float | None = None   # certified area (SYQMJ), 亩
    area_ha: float = 0.0
    population: int | None = None
    geometry_sha256: str = ""
    geometry_wkb: bytes | None = Field(default=None, sa_column=Column(LargeBinary))


class ServiceValue(SQLModel, table=True):
    __tablename__ = "service_results"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    zone_kind: str
    zone_id: str = Field(index=True)
    service: str = Field(index=True)
    quantity: float
    unit: str
    value_cny: float
    price_year: int
    used_share: float | None = None          # actual (used) share of the supply (eco_value/accounts/actual.py)
    actual_value_cny: float | None = None    # actual GEP = value_cny × used_share
    nodata_px: float | None = None           # pixels of valid land cover without a result (a declared layer is nodata)
    nodata_ha: float | None = None           # the same as area


class CarbonValue(SQLModel, table=True):
    __tablename__ = "carbon_results"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    zone_kind: str
    zone_id: str = Field(index=True)
    period_start: int
    period_end: int
    area_ha: float
    stock_t1_tc: float
    stock_t2_tc: float
    net_sink_tco2e_per_yr: float
    ci95_low_tco2e_per_yr: float
    ci95_high_tco2e_per_yr: float
    afforestation_tco2e_per_yr: float = 0.0
    deforestation_tco2e_per_yr: float = 0.0
    forest_remaining_tco2e_per_yr: float = 0.0
    harvest_tco2e_per_yr: float = 0.0     # forest remaining forest with a recorded harvest (revision 0008_parcel_tenure)


class GepInterval(SQLModel, table=True):
    """95 % Monte Carlo interval of a zone's GEP (county and townships; eco_value.gep_uncertainty)."""

    __tablename__ = "gep_intervals"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    zone_kind: str
    zone_id: str = Field(index=True)
    gep_cny: float
    mc_mean_cny: float
    ci95_low_cny: float
    ci95_high_cny: float
    draws: int
    seed: int


class Issuance(SQLModel, table=True):
    __tablename__ = "issuances"
    __table_args__ = (UniqueConstraint("run_id", "vintage", "project_id"),)
    id: str = Field(primary_key=True, max_length=36)
    run_id: str = Field(foreign_key="runs.id", index=True)
    project_id: str
    region_adcode: str = ""
    vintage: int
    monitoring_start: str = ""
    monitoring_end: str = ""
    methodology: str = ""
    methodology_version: str = ""
    created: datetime
    gross_removals_tco2e: float
    baseline_tco2e: float = 0.0
    leakage_tco2e: float = 0.0
    uncertainty_deduction_tco2e: float = 0.0
    buffer_share: float = 0.0
    remainder_tco2e: float = 0.0
    net_issued_tco2e: int
    buffer_tco2e: int
    ruleset_hash: str
    verification_body: str = ""
    verification_date: str = ""
    verification_approach: str = ""


class IssuanceLine(SQLModel, table=True):
    """One deduction or parcel line of an issuance (baseline, leakage, uncertainty, buffer, remainder)."""

    __tablename__ = "issuance_lines"
    id: int | None = Field(default=None, primary_key=True)
    issuance_id: str = Field(foreign_key="issuances.id", index=True)
    parcel_id: str = ""
    kind: str  # gross | baseline | leakage | uncertainty | buffer | issued | remainder
    quantity_tco2e: float


class ParcelVintage(SQLModel, table=True):
    """A parcel-vintage can be issued once, ever (unique constraint enforced by the database)."""

    __tablename__ = "parcel_vintages"
    __table_args__ = (UniqueConstraint("parcel_id", "vintage"),)
    id: int | None = Field(default=None, primary_key=True)
    parcel_id: str
    vintage: int
    issuance_id: str = Field(foreign_key="issuances.id")
    other_programme: str = "none"


class SerialCounter(SQLModel, table=True):
    __tablename__ = "serial_counter"
    name: str = Field(primary_key=True)
    next_serial: int


class CreditBlock(SQLModel, table=True):
    __tablename__ = "credit_blocks"
    id: int | None = Field(default=None, primary_key=True)
    issuance_id: str = Field(foreign_key="issuances.id", index=True)
    first: int = Field(index=True)
    last: int
    vintage: int
    status: str  # held | listed | transferred | retired | cancelled | buffer
    holder_id: str
    beneficiary: str = ""
    parcels_json: str = Field(default="[]", sa_column=Column(Text))


class StatusEvent(SQLModel, table=True):
    __tablename__ = "status_events"
    id: int | None = Field(default=None, primary_key=True)
    created: datetime
    actor: str
    first: int
    last: int
    from_status: str
    to_status: str
    holder_id: str = ""
    beneficiary: str = ""
    issuance_id: str = ""
    reason: str = ""
    # SHA-256 of the issuance record (totals, deduction lines, parcel-vintages, initial blocks) on the events
    # that create its blocks; "" on other events and on events stored before migration 0004
    detail_sha256: str = Field(default="", max_length=64)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class PolicyResult(SQLModel, table=True):
    """A stored policy calculation (land-unit value, damage, quota allocation) with its inputs and rule."""

    __tablename__ = "policy_results"
    id: str = Field(primary_key=True, max_length=36)
    run_id: str = Field(foreign_key="runs.id", index=True)
    kind: str = Field(index=True)  # unit_value | damage | allocation
    created: datetime
    rule: str = ""
    params_json: str = Field(default="{}", sa_column=Column(Text))
    result_json: str = Field(default="{}", sa_column=Column(Text))
    geometry_wkb: bytes | None = Field(default=None, sa_column=Column(LargeBinary))


class Project(SQLModel, table=True):
    """A crediting project: parcels of one run under one methodology, with its dates and validation."""

    __tablename__ = "projects"
    id: str = Field(primary_key=True, max_length=40)   # letters and digits: part of every serial
    name: str
    developer: str
    methodology: str                  # file id in accounting_rules/methodologies, e.g. ccer-14-001-v01
    methodology_code: str = ""
    methodology_version: str = ""
    start_date: str                   # ISO date
    crediting_start: str
    crediting_end: str
    run_id: str = Field(foreign_key="runs.id", index=True)
    adcode: str = ""
    country: str = "China"
    location_crs: str = ""
    location_wkb: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    validation_body: str = ""
    validation_date: str = ""
    status: str = "Listed"            # CAD Trust projectStatusValues
    description: str = Field(default="", sa_column=Column(Text))
    created: datetime


class ProjectParcel(SQLModel, table=True):
    """A parcel of a project: the facts its eligibility was judged on, and the verdict."""

    __tablename__ = "project_parcels"
    __table_args__ = (UniqueConstraint("project_id", "parcel_id"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="projects.id", index=True)
    parcel_id: str = Field(index=True)
    eligible: bool = False
    facts_json: str = Field(default="{}", sa_column=Column(Text))


class EligibilityLine(SQLModel, table=True):
    """One eligibility test of one parcel of a project: rule, pass/fail and the reason."""

    __tablename__ = "eligibility_lines"
    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="projects.id", index=True)
    parcel_id: str = Field(index=True)
    rule: str
    passed: bool
    reason: str = Field(default="", sa_column=Column(Text))


class IssuanceVerification(SQLModel, table=True):
    """The verification of an issuance recorded after it was issued (its units were pending until then)."""

    __tablename__ = "issuance_verifications"
    issuance_id: str = Field(foreign_key="issuances.id", primary_key=True)
    body: str
    approach: str
    report_date: str
    created: datetime
