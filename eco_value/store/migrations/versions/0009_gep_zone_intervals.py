"""GEP Monte Carlo intervals by zone: table gep_intervals (county and townships)

Revision ID: 0009_gep_intervals
Revises: 0008_parcel_tenure
Create Date: 2026-11-29

One row per zone with a 95 % interval of its GEP (eco_value/gep_uncertainty.py). Runs stored before
this revision have none (their county interval stays in the run summary).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009_gep_intervals'
down_revision = '0008_parcel_tenure'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gep_intervals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('zone_kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('zone_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('gep_cny', sa.Float(), nullable=False),
    sa.Column('mc_mean_cny', sa.Float(), nullable=False),
    sa.Column('ci95_low_cny', sa.Float(), nullable=False),
    sa.Column('ci95_high_cny', sa.Float(), nullable=False),
    sa.Column('draws', sa.Integer(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('gep_intervals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gep_intervals_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_gep_intervals_zone_id'), ['zone_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('gep_intervals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gep_intervals_zone_id'))
        batch_op.drop_index(batch_op.f('ix_gep_intervals_run_id'))
    op.drop_table('gep_intervals')
