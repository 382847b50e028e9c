"""nodata inside the zones: pixels and area of each service result without data

Revision ID: 0010_service_nodata
Revises: 0009_gep_intervals
Create Date: 2026-11-29

Per zone and service, the pixels (exact coverage) of valid land cover where a layer the service
declares holds no data (eco_value/engine/gaps.py). Rows stored before this revision keep NULL
(not counted).
"""
import sqlalchemy as sa
from alembic import op

revision = '0010_service_nodata'
down_revision = '0009_gep_intervals'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('service_results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nodata_px', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('nodata_ha', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('service_results', schema=None) as batch_op:
        batch_op.drop_column('nodata_ha')
        batch_op.drop_column('nodata_px')
