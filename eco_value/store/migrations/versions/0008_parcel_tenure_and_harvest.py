"""parcels carry their tenure (林权 records); carbon results report harvest beside the other land-use changes

Revision ID: 0008_parcel_tenure
Revises: 0007_remote_hash_kind
Create Date: 2026-11-29

zones: tenure_certificate, tenure_holder, use_right_start, use_right_end (ISO dates as text, '' without
a record) and tenure_area_mu (NULL without a record), from a catalog's tenure source
(``eco_value/inputs/tenure.py``). carbon_results: harvest_tco2e_per_yr, the sink of forest remaining
forest where the 小班 change reasons record a harvest (``accounting_rules/change_events.toml``); rows
stored before this revision had no recorded events (0).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008_parcel_tenure'
down_revision = '0007_remote_hash_kind'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('zones', schema=None) as batch_op:
        for name in ('tenure_certificate', 'tenure_holder', 'use_right_start', 'use_right_end'):
            batch_op.add_column(sa.Column(name, sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('tenure_area_mu', sa.Float(), nullable=True))
    with op.batch_alter_table('carbon_results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('harvest_tco2e_per_yr', sa.Float(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('carbon_results', schema=None) as batch_op:
        batch_op.drop_column('harvest_tco2e_per_yr')
    with op.batch_alter_table('zones', schema=None) as batch_op:
        for name in ('tenure_area_mu', 'use_right_end', 'use_right_start', 'tenure_holder', 'tenure_certificate'):
            batch_op.drop_column(name)
