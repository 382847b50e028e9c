"""actual (used) GEP: used share and actual value of every service result

Revision ID: 0006_actual_gep
Revises: 0005
Create Date: 2026-11-29

Rows stored before this revision keep NULL (their actual GEP was not computed).
"""
from alembic import op
import sqlalchemy as sa


revision = '0006_actual_gep'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('service_results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('used_share', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('actual_value_cny', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('service_results', schema=None) as batch_op:
        batch_op.drop_column('actual_value_cny')
        batch_op.drop_column('used_share')
